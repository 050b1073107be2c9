#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: memory_facts
short_description: Memory verdict of a host that knows its real limit and who is to blame
version_added: 0.1.0
description:
  - Reads C(/proc/meminfo), the memory cgroup (v1 or v2) of the host or container, pressure stall information,
    OOM counters and kernel OOM messages, and the memory of every process grouped by service
    (AnQiCMS instances one per install directory, MariaDB/MySQL, Redis, Memcached, nginx, PHP-FPM, other).
  - The verdict uses the B(effective) limit, the tightest of the machine's RAM and the memory limits of the cgroup
    this module runs in and its ancestors. Inside a container or a memory-limited host C(/proc/meminfo) shows the
    whole machine; the cgroup limit is what the kernel enforces.
  - A service with its own cgroup limit (a systemd unit with C(MemoryMax=), a nested container) is judged against
    that limit too, so an instance at 95 % of its own limit is reported on a host with plenty of free RAM.
  - With O(sample_seconds) above 0 the module samples the services' RSS several times and reports growth per
    minute and C(leak_suspected).
  - With O(textfile) it also writes the same measurements as Prometheus metrics for node_exporter's textfile collector,
    and keeps a small trend state so that a single pass reports each service's growth and the seconds left until its
    limit (see O(textfile) and O(state_file)); the metric names are listed in C(docs/alerts.md) of the collection.
  - Without O(textfile) it is read-only. Returns its facts only as C(ansible_facts.opsguard_memory) (use C(opsguard_memory) after the task, or the
    registered result's C(ansible_facts.opsguard_memory)); the keys are documented there.
  - The module's own process is not counted in RV(ansible_facts.opsguard_memory.services) and
    RV(ansible_facts.opsguard_memory.top).
  - The process table is read straight from C(/proc) with the Python standard library only (no psutil, no subprocess).
  - B(Only processes charged to the limit count.) When the effective limit comes from a cgroup, only the processes in
    that cgroup and below it (RV(ansible_facts.opsguard_memory.counted_cgroup)) are listed in
    RV(ansible_facts.opsguard_memory.services) and RV(ansible_facts.opsguard_memory.top), ranked and named as
    RV(ansible_facts.opsguard_memory.culprit). Named services outside it (a sibling cgroup, above the cgroup namespace,
    or whose cgroup cannot be read) are listed in RV(ansible_facts.opsguard_memory.outside_limit) with no share of the
    limit and are never the culprit. When the limit is the machine's RAM every process counts.
  - A share of a limit is never above 100 % (the RSS of processes counts shared pages once per process, so it can
    add up to more than the memory they are charged).
  - Every option is checked (NaN, infinities and out-of-range numbers included) before anything is read, and the
    files read back from C(/proc), the cgroup hierarchy and C(/dev/kmsg) are treated as untrusted input.
  - Thresholds and their justification are documented in C(docs/modules/memory_facts.md) of the collection.
author:
  - opsguard contributors (@opsguard)
requirements:
  - Linux with /proc; cgroup v1 or v2 for container-aware limits; PSI (kernel 4.20+) for pressure
extends_documentation_fragment:
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.facts
  - opsguard.anqicms.attributes.platform
attributes:
  check_mode:
    support: full
    details: Check mode gathers the same facts; with O(textfile) it renders the metrics but writes no file.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - Without O(textfile) the module is read-only and never reports a change.
      - With O(textfile) every run writes fresh measurements (and the trend state) and reports a change.
  facts:
    support: full
  platform:
    support: full
    platforms: linux
options:
  available_warning:
    description: Verdict C(warning) when less than this percentage of the effective limit is available (0 to 100, like every percentage option).
    type: float
    default: 25.0
  available_critical:
    description:
      - Verdict C(critical) when less than this percentage of the effective limit is available. Must be below O(available_warning).
      - The default fires before earlyoom (10 %) and systemd-oomd act, leaving time for a graceful stop.
    type: float
    default: 15.0
  service_limit_warning:
    description: Verdict C(warning) when a service uses at least this percentage of its own cgroup limit (working set).
    type: float
    default: 85.0
  service_limit_critical:
    description: Verdict C(critical) when a service uses at least this percentage of its own cgroup limit. Must be above O(service_limit_warning).
    type: float
    default: 95.0
  psi_warning:
    description:
      - Verdict C(warning) when memory PSI C(full avg10) is at least this percentage.
      - Used only when the pressure belongs to the same scope as the limit (cgroup v2 C(memory.pressure), or
        C(/proc/pressure/memory) when the limit is the machine's RAM).
    type: float
    default: 10.0
  psi_critical:
    description: Verdict C(critical) when memory PSI C(full avg10) is at least this percentage. Must be above O(psi_warning).
    type: float
    default: 40.0
  swap_warning:
    description: Verdict C(warning) when at least this percentage of swap (of the cgroup, or of the machine) is used.
    type: float
    default: 80.0
  swap_critical:
    description: Verdict C(critical) when at least this percentage of swap is used. Must be above O(swap_warning).
    type: float
    default: 95.0
  oom_window:
    description: Kernel OOM kills younger than this many seconds make the verdict at least C(warning). Between 0 and 315360000 (ten years).
    type: int
    default: 900
  sample_seconds:
    description:
      - Observe the services for this many seconds (O(samples) samples) and report growth per service.
      - C(0) takes a single snapshot and returns RV(ansible_facts.opsguard_memory.trend) as null. At most 3600.
    type: float
    default: 0
  samples:
    description: Number of samples taken over O(sample_seconds), between 3 and 60 (checked also when not sampling).
    type: int
    default: 4
  leak_mib_per_minute:
    description:
      - A service is C(leak_suspected) when it grows at least this many MiB per minute (least squares over all samples)
        and at least 2 MiB in total, grows in at least half of the intervals and never shrinks by more than 1 % between
        two samples.
      - Above 0 and at most 1048576.
    type: float
    default: 4.0
  top:
    description: Number of largest processes returned in RV(ansible_facts.opsguard_memory.top), between 0 and 10000.
    type: int
    default: 10
  detailed:
    description:
      - Read C(/proc/PID/smaps_rollup) for USS, PSS and swap of the processes of named services (not C(other))
        and of the O(top) processes. Other processes report null there.
      - Turn off to save time on hosts with thousands of processes.
    type: bool
    default: true
  kernel_messages:
    description: Read C(/dev/kmsg) for the victims of recent OOM kills (only when the kernel counted a kill since boot).
    type: bool
    default: true
  cgroup:
    description:
      - Judge this cgroup (a path relative to the memory hierarchy's mount, for example C(/system.slice/anqicms.service))
        and its ancestors instead of the cgroup this module runs in.
      - Only the processes in this cgroup and below it are listed in RV(ansible_facts.opsguard_memory.services) and
        RV(ansible_facts.opsguard_memory.top) and can be the culprit.
      - Must stay inside the hierarchy; C(..) components, control characters, an empty string, paths longer than 4096
        characters and paths that resolve outside the hierarchy's mount are refused.
    type: str
  matchers:
    description:
      - Service matchers tried before the defaults, first match wins. A process matches when any given criterion matches.
      - Children of a matched process belong to its service.
      - At most 100 matchers; names of at most 128 printable characters; at most 64 patterns of at most 1024 characters
        (no NUL) per field; O(matchers[].cmdline) at most 1024 characters and a valid Python regular expression.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Service name in the result.
        type: str
        required: true
      kind:
        description: Kind of service.
        type: str
        choices: [anqicms, database, redis, memcached, nginx, php-fpm, other]
        default: other
      exe:
        description: Shell-style patterns for the resolved executable path.
        type: list
        elements: str
      process_name:
        description: Shell-style patterns for the process name.
        type: list
        elements: str
      unit:
        description: Shell-style patterns for the systemd unit (from the process's cgroup).
        type: list
        elements: str
      cmdline:
        description: Python regular expression searched in the command line.
        type: str
      per_executable:
        description: One service per resolved executable (per install directory). Defaults to true for kind C(anqicms).
        type: bool
  textfile:
    description:
      - Also write the measurements to this file in the Prometheus text exposition format, for node_exporter's textfile
        collector (C(--collector.textfile.directory)). Written atomically (a temporary file in the same directory,
        fsync, rename), mode C(0644), HELP and TYPE for every metric, no C(host) label (node_exporter adds the instance).
      - "Metrics: C(opsguard_memory_limit_bytes{source}), C(opsguard_memory_available_bytes), C(opsguard_memory_available_ratio),
        C(opsguard_memory_verdict{state}) (1 for the current state), C(opsguard_pressure_some_avg10), C(opsguard_pressure_full_avg10)
        (percent, only when the kernel has PSI), C(opsguard_oom_kills_total) (the limiting cgroup's counter, else the host's),
        C(opsguard_service_memory_bytes{service,kind,unit}) (RSS), C(opsguard_service_limit_bytes{service,unit}),
        C(opsguard_service_limit_ratio{service}), C(opsguard_service_growth_bytes_per_second{service}),
        C(opsguard_service_seconds_to_limit{service}) (only while growing), C(opsguard_service_memory_events_total{service,unit,event})
        (C(high), C(max), C(oom_kill) of the service's limiting cgroup where the kernel has them; cgroup v1 C(failcnt) is C(max)),
        C(opsguard_collector_duration_seconds) and C(opsguard_collector_last_success_timestamp_seconds)."
      - Services exported are the named ones (AnQiCMS instances, databases, caches, nginx, PHP-FPM, O(matchers)) and any
        other service with its own cgroup limit; label values are escaped as the format requires (they come from process
        names and units).
      - "Growth and ETA: each run compares a service's RSS with the sample the previous run left in O(state_file). The rate
        is an exponentially weighted moving average with a 60 s time constant (at a 10 s interval one sample moves it by
        15 %), so a garbage-collector sawtooth or a spike does not look like a leak; once RSS has grown on 3 runs in a row
        spanning at least 20 s, the rate over that unbroken growth counts when it is higher, so a fast leak is known
        20-30 s after it starts instead of about a minute. A gap of more than 900 s, a clock that
        went back, or RSS falling below half (a restart) starts the service afresh (no rate on that run). A service is
        growing when the rate is at least O(leak_mib_per_minute); only then is C(opsguard_service_seconds_to_limit) written:
        headroom (its own limit minus its cgroup's working set, or the available memory of the effective limit) divided by the rate."
      - An absolute path whose directory exists and whose file name ends in C(.prom); checked before anything is read.
    type: path
  state_file:
    description:
      - Where the trend state (the previous sample per service, a small JSON file) is kept between runs.
      - Defaults to the O(textfile) path with C(.prom) replaced by C(.state.json). Only used with O(textfile).
      - Read back as untrusted input; a file larger than 1 MiB, not JSON, or not of the expected shape is ignored
        (with a note) and replaced.
      - An absolute path in an existing directory, not ending in C(.prom).
    type: path
  default_matchers:
    description: Append the built-in matchers (anqicms, MariaDB/MySQL, Redis, Memcached, nginx, PHP-FPM) after O(matchers).
    type: bool
    default: true
seealso:
  - module: ansible.builtin.setup
    description: Host facts; its memory facts have no MemAvailable, cgroup limit, PSI or per-process view.
  - name: Linux PSI documentation
    description: Pressure stall information.
    link: https://docs.kernel.org/accounting/psi.html
  - name: cgroup v2 memory controller
    description: memory.max, memory.high, memory.events.
    link: https://docs.kernel.org/admin-guide/cgroup-v2.html#memory
'''

EXAMPLES = r'''
- name: Gather the memory verdict
  opsguard.anqicms.memory_facts:

- name: Fail when the host is in trouble and name the culprit
  ansible.builtin.assert:
    that: ansible_facts.opsguard_memory.verdict != 'critical'
    fail_msg: "{{ ansible_facts.opsguard_memory.reasons | join(' ') }} Culprit: {{ ansible_facts.opsguard_memory.culprit.name | default('none') }}"

- name: Watch for a leak over 30 seconds
  opsguard.anqicms.memory_facts:
    sample_seconds: 30
    samples: 6
  register: mem

- name: A custom matcher for a supervisor-run instance
  opsguard.anqicms.memory_facts:
    matchers:
      - name: shop
        kind: anqicms
        exe: ['/srv/shop/anqicms']
    available_warning: 30
    available_critical: 20

- name: Write Prometheus metrics for node_exporter's textfile collector (growth and ETA from the previous run)
  opsguard.anqicms.memory_facts:
    textfile: /var/lib/prometheus/node-exporter/opsguard.prom
    detailed: false
    kernel_messages: false
'''

RETURN = r'''
---
ansible_facts:
  description: Facts to add to the host.
  returned: success
  type: dict
  contains:
    opsguard_memory:
      description:
        - The memory report and verdict of the host; the module returns nothing else besides C(changed).
        - After the task it is the host fact C(opsguard_memory).
      returned: success
      type: dict
      contains:
        system:
          description: Machine memory from /proc/meminfo in bytes (C(cached) includes SReclaimable, C(used) is total minus available).
          returned: success
          type: dict
          contains:
            total: {description: "MemTotal.", type: int}
            available: {description: "MemAvailable.", type: int}
            used: {description: "total - available.", type: int}
            free: {description: "MemFree.", type: int}
            buffers: {description: "Buffers.", type: int}
            cached: {description: "Cached + SReclaimable.", type: int}
            shared: {description: "Shmem.", type: int}
            swap_total: {description: "SwapTotal.", type: int}
            swap_used: {description: "SwapTotal - SwapFree.", type: int}
            swap_free: {description: "SwapFree.", type: int}
            percent: {description: "Used share of total in percent.", type: float}
        limit:
          description: The effective limit and its usage.
          returned: success
          type: dict
          contains:
            bytes: {description: "Effective limit in bytes.", type: int}
            source: {description: "C(meminfo), C(cgroup v1) or C(cgroup v2).", type: str}
            cgroup_path: {description: "The cgroup that sets the limit (relative to the hierarchy's mount) or null.", type: str}
            usage_bytes: {description: "Usage of that cgroup (page cache included), or used RAM.", type: int}
            working_set_bytes: {description: "Usage minus inactive file cache.", type: int}
            available_bytes: {description: "Limit minus working set (never above MemAvailable).", type: int}
            available_percent: {description: "available_bytes in percent of the limit.", type: float}
            high_bytes: {description: "Tightest cgroup v2 memory.high on the path, or null.", type: int}
            max_bytes: {description: "The hard limit, or null when the limit is the machine's RAM.", type: int}
            swap_bytes: {description: "Swap used by the cgroup, or null.", type: int}
            swap_max_bytes: {description: "Swap limit of the cgroup, or null.", type: int}
            events: {description: "OOM counters: v2 memory.events, v1 memory.oom_control and failcnt.", type: dict}
          sample: {bytes: 536870912, source: cgroup v1, cgroup_path: /, available_bytes: 31457280, available_percent: 5.9}
        cgroup:
          description: The memory hierarchy (C(version), C(mount), C(self_path), C(scope_path), C(limited)) or null without one.
          returned: success
          type: dict
        pressure:
          description:
            - "PSI: C(some) and C(full), each with C(avg10), C(avg60), C(avg300) (percent) and C(total_usec); C(scope) is
              C(cgroup) or C(host); C(source) the file read. Null when the kernel has none (see C(pressure_note))."
          returned: success
          type: dict
        pressure_note:
          description: Where the pressure comes from, whether it is used for the verdict, or why there is none.
          returned: success
          type: str
        oom:
          description:
            - C(host_oom_kills) (/proc/vmstat oom_kill, machine-wide), C(cgroup_oom_kills) and C(cgroup_events) of the limiting
              cgroup, C(messages) (last kernel OOM kills with C(victim), C(pid), C(time), C(constraint)) and C(recent), those in the O(oom_window).
          returned: success
          type: dict
        services:
          description: Memory per service, largest first.
          returned: success
          type: list
          elements: dict
          contains:
            name: {description: "Service name; AnQiCMS instances are C(anqicms:INSTALL_DIR).", type: str}
            kind: {description: "anqicms, database, redis, memcached, nginx, php-fpm or other.", type: str}
            exe: {description: "Resolved executable of the first matched process.", type: str}
            install_dir: {description: "Directory of the executable for AnQiCMS instances.", type: str}
            unit: {description: "Most common systemd unit of its processes.", type: str}
            pids: {description: "Process IDs.", type: list, elements: int}
            rss_bytes: {description: "Sum of RSS.", type: int}
            uss_bytes: {description: "Sum of USS (null when unreadable).", type: int}
            pss_bytes: {description: "Sum of PSS (null when unreadable).", type: int}
            swap_bytes: {description: "Sum of swapped-out memory (null when unreadable).", type: int}
            share_of_limit:
              description: "RSS in percent of the effective limit, capped at 100 (RSS counts shared pages in every process)."
              type: float
            in_limit: {description: "Always true here: the service is charged to the effective limit (see C(outside_limit)).", type: bool}
            cgroup:
              description: "The service's own limit (C(path), C(limit_bytes), C(usage_bytes), C(working_set_bytes), C(share) in percent) or null."
              type: dict
            growth_bytes_per_minute: {description: "With sampling only.", type: int}
            leak_suspected: {description: "With sampling only.", type: bool}
            growth_bytes_per_second:
              description: "With O(textfile) only: growth since the previous run, the smoothed rate or the rate over an unbroken
                growth (null on a service's first run or when not exported)."
              type: float
            seconds_to_limit:
              description: "With O(textfile) only: seconds until the service reaches its limit at that rate; null unless it grows."
              type: float
        outside_limit:
          description:
            - Named services (a matcher's, or of a known kind) whose processes are outside C(counted_cgroup), so not charged to
              the effective limit, or whose cgroup cannot be read. Same keys as C(services), with C(in_limit) false,
              C(share_of_limit) and C(cgroup) null. They are never ranked against the limit nor named as C(culprit).
            - Empty when every process counts.
          returned: success
          type: list
          elements: dict
        counted_cgroup:
          description:
            - "The cgroup (relative to the memory hierarchy's mount) whose subtree holds the processes in C(services), C(top) and
              C(culprit): O(cgroup) when given, else the cgroup that sets a cgroup limit. Null when the limit is the machine's
              RAM and every process counts."
          returned: success
          type: str
          sample: /system.slice/anqicms.service
        top:
          description: The largest processes (C(pid), C(name), C(exe), C(rss_bytes), C(uss_bytes), C(pss_bytes), C(swap_bytes), C(service)).
          returned: success
          type: list
          elements: dict
        trend:
          description:
            - Null without sampling. Otherwise C(samples), C(seconds), C(leak_suspected), C(suspects) and C(services), a list of
              C(name), C(kind), C(rss_bytes) per sample, C(growth_bytes_per_minute), C(leak_suspected), C(minutes_to_limit).
          returned: success
          type: dict
        verdict:
          description: C(ok), C(warning) or C(critical).
          returned: success
          type: str
          sample: critical
        reasons:
          description: Plain sentences with the numbers behind the verdict.
          returned: success
          type: list
          elements: str
        culprit:
          description:
            - The service to blame (C(name), C(kind), C(exe), C(install_dir), C(unit), C(pids), C(rss_bytes), C(share_of_limit), C(cgroup)).
            - Always one of C(services), so charged to the effective limit; never a process outside C(counted_cgroup).
            - Null when the verdict is ok.
          returned: success
          type: dict
        notes:
          description: Files that could not be read and other degradations.
          returned: success
          type: list
          elements: str
        process_count:
          description: Number of user-space processes seen that count (those in C(counted_cgroup) when it is set).
          returned: success
          type: int
        thresholds:
          description: The thresholds used.
          returned: success
          type: dict
        textfile:
          description:
            - With O(textfile) only. C(path), C(state_file), C(written) (false in check mode), C(series) (number of samples)
              and C(bytes) of the metrics file. Every service then also has C(growth_bytes_per_second) and
              C(seconds_to_limit) (null on its first run, or when it is not growing or not exported).
          returned: when O(textfile) is given
          type: dict
          sample: {path: /var/lib/prometheus/node-exporter/opsguard.prom, state_file: /var/lib/prometheus/node-exporter/opsguard.state.json,
                   written: true, series: 18, bytes: 2345}
'''


import os

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, memory, metrics, services
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module

THRESHOLD_OPTIONS = ('available_warning', 'available_critical', 'service_limit_warning', 'service_limit_critical',
                     'psi_warning', 'psi_critical', 'swap_warning', 'swap_critical', 'leak_mib_per_minute', 'oom_window')


def argument_spec() -> dict:
    spec = {key: {'type': 'float', 'default': value} for key, value in memory.DEFAULT_THRESHOLDS.items()}
    spec['oom_window'] = {'type': 'int', 'default': 900}
    spec.update(
        sample_seconds={'type': 'float', 'default': 0},
        samples={'type': 'int', 'default': 4},
        top={'type': 'int', 'default': 10},
        detailed={'type': 'bool', 'default': True},
        kernel_messages={'type': 'bool', 'default': True},
        cgroup={'type': 'str'},
        default_matchers={'type': 'bool', 'default': True},
        textfile={'type': 'path'},
        state_file={'type': 'path'},
        matchers={'type': 'list', 'elements': 'dict', 'default': [], 'options': {
            'name': {'type': 'str', 'required': True},
            'kind': {'type': 'str', 'default': 'other', 'choices': list(services.KINDS)},
            'exe': {'type': 'list', 'elements': 'str'},
            'process_name': {'type': 'list', 'elements': 'str'},
            'unit': {'type': 'list', 'elements': 'str'},
            'cmdline': {'type': 'str'},
            'per_executable': {'type': 'bool'},
        }},
    )
    return spec


def main() -> None:
    module = new_module(argument_spec(), 'memory_facts', supports_check_mode=True)
    host = os.uname()[1]
    params = module.params
    # Every option is checked before any work; NaN, infinities and huge numbers are refused with the range.
    thresholds = {key: float(params[key]) for key in THRESHOLD_OPTIONS}
    errors = memory.check_thresholds(thresholds)
    errors.extend(memory.check_options(float(params['sample_seconds']), params['samples'], params['top']))
    cgroup_error = cgroups.check_cgroup_option(params['cgroup'])
    if cgroup_error:
        errors.append(cgroup_error)
    try:
        matchers = services.compile_matchers(params['matchers'], params['default_matchers'])
    except ValueError as exc:
        errors.append(str(exc))
        matchers = []
    errors.extend(metrics.check_paths(params['textfile'], params['state_file']))
    if errors:
        module.fail_json(msg='memory_facts on %s: invalid options: %s' % (host, ' '.join(errors)))

    def gather() -> dict:
        return memory.gather(thresholds, matchers=matchers, top=params['top'], detailed=params['detailed'],
                             sample_seconds=params['sample_seconds'], samples=params['samples'],
                             cgroup_path=params['cgroup'], kernel_messages=params['kernel_messages'])

    try:
        if params['textfile']:
            facts = metrics.collect(gather, params['textfile'], params['state_file'],
                                    floor_bytes_per_second=thresholds['leak_mib_per_minute'] * metrics.MIB / 60.0,
                                    write=not module.check_mode)
        else:
            facts = gather()
    except ValueError as exc:
        module.fail_json(msg='memory_facts on %s: %s' % (host, exc))
    except OSError as exc:
        module.fail_json(msg='memory_facts on %s: cannot write the metrics (textfile=%s): %s; check that the directory is '
                             'writable by this user.' % (host, params['textfile'], exc))
    module.exit_json(changed=bool(params['textfile']) and not module.check_mode, ansible_facts={'opsguard_memory': facts})


if __name__ == '__main__':
    main()
