# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the monitor role: monitor_watch_config, monitor_prometheus_config and monitor_alertmanager_config
(documented in their .yml files). Each checks every option it is given and refuses with all problems at once,
before the role changes anything; the role writes the results with to_nice_json / to_nice_yaml."""

from __future__ import annotations

import json
import posixpath
import re
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.module_utils import metrics, services

# systemd sizes for MemoryMax= (bytes or K/M/G suffix); below 32M a Python interpreter with the pass's modules
# has little room left.
SIZE_RE = re.compile(r'^([0-9]+)([KMG]?)\Z')
SIZE_UNITS = {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3}
MEMORY_MAX_MIN = 32 * 1024 ** 2
# Prometheus durations (retention) and one host:port target without blanks.
DURATION_RE = re.compile(r'^[1-9][0-9]*(ms|s|m|h|d|w|y)\Z')
TARGET_RE = re.compile(r'^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})\Z')
LABEL_RE = re.compile(r'^[^\x00-\x1f\x7f]{1,253}\Z')
URL_RE = re.compile(r'^https?://[^\s/?#@]+(:[0-9]{1,5})?(/[^\s]*)?\Z')
# A bearer token: printable ASCII without blanks (RFC 6750 b64token and more), or empty.
TOKEN_RE = re.compile(r'[\x21-\x7e]*\Z')


def _show(value: t.Any) -> str:
    return json.dumps(value, default=str)


def _integer(options: dict[str, t.Any], name: str, low: int, high: int, problems: list[str]) -> int | None:
    value = options.get(name)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append('%s=%s: give a whole number from %d to %d.' % (name, _show(value), low, high))
        return None
    return value


def _absolute(options: dict[str, t.Any], name: str, problems: list[str]) -> str | None:
    value = options.get(name)
    if (not isinstance(value, str) or not value.startswith('/') or any(c in value for c in '\0\n\r')
            or posixpath.normpath(value) == '/' or len(value) > 1024):
        problems.append('%s=%s: give an absolute directory path (not /) without NUL or newline characters.'
                        % (name, _show(value)))
        return None
    return posixpath.normpath(value)


def memory_bytes(value: t.Any) -> int | None:
    """A systemd size (``64M``, ``67108864``) in bytes, or None when it is not one."""
    match = SIZE_RE.match(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    return int(match.group(1)) * SIZE_UNITS[match.group(2)] if match else None


def monitor_watch_config(options: dict[str, t.Any]) -> dict[str, t.Any]:
    """The watcher's configuration file and unit settings from the role's options (monitor_* without the prefix)."""
    if not isinstance(options, dict):
        raise AnsibleFilterError('monitor_watch_config expects a dictionary of options, got %s' % _show(options))
    problems: list[str] = []
    interval = _integer(options, 'monitor_interval', 1, 3600, problems)
    accuracy = _integer(options, 'monitor_accuracy', 0, 3600, problems)
    if interval is not None and accuracy is not None and accuracy > interval:
        problems.append('monitor_accuracy=%d is larger than monitor_interval=%d: passes would drift by more than one '
                        'interval; give at most the interval (1 s is usual).' % (accuracy, interval))
    cpu_weight = _integer(options, 'monitor_cpu_weight', 1, 10000, problems)
    memory_max = options.get('monitor_memory_max')
    size = memory_bytes(memory_max)
    if size is None or size < MEMORY_MAX_MIN:
        problems.append('monitor_memory_max=%s: give a systemd size of at least 32M (such as 64M).' % _show(memory_max))
    floor = options.get('monitor_leak_mib_per_minute')
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor <= 1024:
        problems.append('monitor_leak_mib_per_minute=%s: give a number above 0 and at most 1024 (MiB per minute).'
                        % _show(floor))
    textfile_dir = _absolute(options, 'monitor_textfile_dir', problems)
    state_dir = _absolute(options, 'monitor_state_dir', problems)
    name = options.get('monitor_textfile_name')
    if not isinstance(name, str) or '/' in name or name.startswith('.') or not name.endswith('.prom') or len(name) > 200:
        problems.append('monitor_textfile_name=%s: give a file name (no /, not hidden) ending in .prom: node_exporter\'s '
                        'textfile collector reads only those.' % _show(name))
        name = None
    matchers = options.get('monitor_matchers') or []
    try:
        services.compile_matchers(matchers, False)
    except ValueError as error:
        problems.append('monitor_matchers: %s' % error)
    if problems:
        raise AnsibleFilterError('The monitor role refuses its options: ' + ' '.join(problems))
    textfile = posixpath.join(textfile_dir, name)
    state_file = posixpath.join(state_dir, metrics.default_state_file(name).rsplit('/', 1)[-1])
    return {
        # cgroup /: the whole host, not the pass's own small cgroup
        'config': {'textfile': textfile, 'state_file': state_file, 'leak_mib_per_minute': floor,
                   'matchers': [dict(m) for m in matchers], 'cgroup': '/'},
        'interval': interval, 'accuracy': accuracy, 'memory_max': size, 'cpu_weight': cpu_weight,
        'read_write_paths': sorted({textfile_dir, state_dir}),
    }


def _targets(targets: t.Any, default_port: int, problems: list[str]) -> list[dict[str, t.Any]]:
    if not isinstance(targets, list) or not targets:
        problems.append('monitor_prometheus_targets=%s: give a non-empty list of "host:port" strings or of '
                        '{target: "host:port", host: NAME}.' % _show(targets))
        return []
    result, seen = [], set()
    for item in targets:
        target, host = (item.get('target'), item.get('host')) if isinstance(item, dict) else (item, None)
        if isinstance(target, str) and ':' not in target and TARGET_RE.match('%s:%d' % (target, default_port)):
            target = '%s:%d' % (target, default_port)
        match = TARGET_RE.match(target) if isinstance(target, str) else None
        if not match or not 0 < int(match.group(3)) < 65536:
            problems.append('target %s: give host:port (a name or address, port 1-65535, no blanks).' % _show(target))
            continue
        if host is None:
            host = match.group(1)
        if not isinstance(host, str) or not LABEL_RE.match(host):
            problems.append('target %s: host label %s must be 1-253 printable characters.' % (target, _show(host)))
            continue
        if target in seen:
            problems.append('target %s is listed twice.' % target)
            continue
        seen.add(target)
        result.append({'targets': [target], 'labels': {'host': host}})
    return result


def monitor_prometheus_config(targets: t.Any, scrape_interval: t.Any = 15, evaluation_interval: t.Any = 15,
                              rules_file: str = '/etc/prometheus/opsguard.rules.yml', alertmanager: str = 'localhost:9093',
                              default_port: int = 9100, retention: t.Any = '15d') -> dict[str, t.Any]:
    """prometheus.yml for the fleet: node_exporter of every target (label ``host``), the rules, the Alertmanager.

    ``retention`` (a command-line option of Prometheus, not part of the file) is checked here with the rest.
    """
    problems: list[str] = []
    if not isinstance(retention, str) or not DURATION_RE.match(retention):
        problems.append('monitor_prometheus_retention=%s: give a Prometheus duration such as 15d or 12h.' % _show(retention))
    options = {'monitor_scrape_interval': scrape_interval, 'monitor_evaluation_interval': evaluation_interval}
    scrape = _integer(options, 'monitor_scrape_interval', 1, 3600, problems)
    evaluation = _integer(options, 'monitor_evaluation_interval', 1, 3600, problems)
    static = _targets(targets, default_port, problems)
    if problems:
        raise AnsibleFilterError('The monitor role refuses its Prometheus options: ' + ' '.join(problems))
    return {
        'global': {'scrape_interval': '%ds' % scrape, 'evaluation_interval': '%ds' % evaluation,
                   'scrape_timeout': '%ds' % min(10, scrape)},
        'rule_files': [rules_file],
        'alerting': {'alertmanagers': [{'static_configs': [{'targets': [alertmanager]}]}]},
        'scrape_configs': [{'job_name': 'node', 'static_configs': static}],
    }


def monitor_alertmanager_config(webhook_url: t.Any = '', group_wait: t.Any = 30, repeat_interval: t.Any = '4h',
                                webhook_token: t.Any = '', critical_group_wait: t.Any = 1) -> dict[str, t.Any]:
    """alertmanager.yml: one route grouped by alert, host and service; a webhook receiver when a URL is given, with
    ``Authorization: Bearer TOKEN`` when a token is given (the collection's Event-Driven Ansible source asks for one).

    Critical alerts have a child route with their own, shorter ``group_wait``: each group is one alert of one instance,
    so there is nothing to wait for, and the wait is part of the time from the threshold to the remediation's drain.
    """
    problems: list[str] = []
    wait = _integer({'monitor_alertmanager_group_wait': group_wait}, 'monitor_alertmanager_group_wait', 0, 3600, problems)
    critical_wait = _integer({'monitor_alertmanager_critical_group_wait': critical_group_wait},
                             'monitor_alertmanager_critical_group_wait', 0, 3600, problems)
    if not isinstance(repeat_interval, str) or not DURATION_RE.match(repeat_interval):
        problems.append('monitor_alertmanager_repeat_interval=%s: give a duration such as 4h or 30m.' % _show(repeat_interval))
    if webhook_url is None:
        webhook_url = ''
    if not isinstance(webhook_url, str) or (webhook_url and not URL_RE.match(webhook_url)):
        # the URL may carry a token: never shown
        problems.append('monitor_alertmanager_webhook_url: give an http:// or https:// URL without blanks (value not shown), '
                        'or leave it empty.')
    if webhook_token is None:
        webhook_token = ''
    if not isinstance(webhook_token, str) or len(webhook_token) > 4096 or not TOKEN_RE.match(webhook_token):
        # a secret: never shown
        problems.append('monitor_alertmanager_webhook_token: give the bearer token as printable characters without blanks '
                        '(at most 4096; value not shown), or leave it empty.')
    elif webhook_token and not webhook_url:
        problems.append('monitor_alertmanager_webhook_token is set but monitor_alertmanager_webhook_url is empty: the token '
                        'is only sent with the webhook.')
    if problems:
        raise AnsibleFilterError('The monitor role refuses its Alertmanager options: ' + ' '.join(problems))
    receiver: dict[str, t.Any] = {'name': 'opsguard'}
    if webhook_url:
        webhook: dict[str, t.Any] = {'url': webhook_url, 'send_resolved': True}
        if webhook_token:
            webhook['http_config'] = {'authorization': {'type': 'Bearer', 'credentials': webhook_token}}
        receiver['webhook_configs'] = [webhook]
    return {
        'route': {'receiver': 'opsguard', 'group_by': ['alertname', 'instance', 'service'],
                  'group_wait': '%ds' % wait, 'group_interval': '1m', 'repeat_interval': repeat_interval,
                  'routes': [{'matchers': ['severity="critical"'], 'group_wait': '%ds' % critical_wait}]},
        'inhibit_rules': [{'source_matchers': ['severity="critical"'], 'target_matchers': ['severity="warning"'],
                           'equal': ['instance', 'service']}],
        'receivers': [receiver],
    }


def monitor_default_targets(play_hosts: t.Any, hostvars: t.Any, port: t.Any = 9100) -> list[dict[str, t.Any]]:
    """node_exporter of every host of the play: ``{target: ADDRESS:PORT, host: INVENTORY_NAME}`` (ansible_host or the name)."""
    if not isinstance(play_hosts, list) or isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise AnsibleFilterError('monitor_default_targets expects the play\'s hosts and a port 1-65535, got %s and %s'
                                 % (_show(play_hosts), _show(port)))
    result = []
    for name in play_hosts:
        address = str((hostvars[name] if name in hostvars else {}).get('ansible_host') or name)
        result.append({'target': ('[%s]:%d' if ':' in address else '%s:%d') % (address, port), 'host': str(name)})
    return result


class FilterModule:
    """Configuration of the watcher, Prometheus and Alertmanager of the monitor role."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'monitor_watch_config': monitor_watch_config, 'monitor_prometheus_config': monitor_prometheus_config,
                'monitor_alertmanager_config': monitor_alertmanager_config,
                'monitor_default_targets': monitor_default_targets}
