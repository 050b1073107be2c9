# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One memory pass of opsguard.anqicms for node_exporter's textfile collector, without Ansible.

Usage: python3 -I -S opsguard-watch.py CONFIG.json

CONFIG.json (written by the role opsguard.anqicms.monitor): textfile, state_file, leak_mib_per_minute, matchers and
cgroup, the memory cgroup judged (default ``/``, the whole host: the pass itself runs in a small cgroup of its own,
whose limit and processes are not what it reports on).
The pass is the collection's own code (module_utils memory and metrics, copied next to this script under lib/ and
byte-compiled): the same measurements as memory_facts with textfile, without USS/PSS details and without the kernel
log. Exit status 0 after a pass, 2 for a configuration that cannot be used (the reason on stderr, in the journal).
"""

import json
import os
import sys

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib')
sys.path.insert(0, LIB)

from ansible_collections.opsguard.anqicms.plugins.module_utils import memory, metrics, services  # noqa: E402


def load(path):
    with open(path, encoding='utf-8') as handle:
        config = json.load(handle)
    if not isinstance(config, dict) or not isinstance(config.get('textfile'), str):
        raise ValueError('%s: expected a JSON object with textfile.' % path)
    floor = config.get('leak_mib_per_minute', 4)
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor <= 1024:
        raise ValueError('%s: leak_mib_per_minute must be a number above 0 and at most 1024.' % path)
    errors = metrics.check_paths(config['textfile'], config.get('state_file'))
    if errors:
        raise ValueError(' '.join(errors))
    return config


def main(argv):
    if len(argv) != 2:
        sys.stderr.write('usage: %s CONFIG.json\n' % argv[0])
        return 2
    try:
        config = load(argv[1])
        matchers = services.compile_matchers(config.get('matchers') or [], True)
    except (OSError, ValueError) as error:
        sys.stderr.write('opsguard-watch: %s\n' % error)
        return 2
    thresholds = dict(memory.DEFAULT_THRESHOLDS)
    thresholds['leak_mib_per_minute'] = config.get('leak_mib_per_minute', 4)
    cgroup = config.get('cgroup', '/')
    try:
        metrics.collect(lambda: memory.gather(thresholds, matchers=matchers, detailed=False, kernel_messages=False,
                                              cgroup_path=cgroup),
                        config['textfile'], config.get('state_file'),
                        floor_bytes_per_second=thresholds['leak_mib_per_minute'] * metrics.MIB / 60.0)
    except ValueError as error:  # a cgroup option memory.gather refuses
        sys.stderr.write('opsguard-watch: %s\n' % error)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
