"""Benchmark: opsguard.anqicms.backup / restore against plain ``mysqldump | gzip`` + ``tar czf`` of the same data.

    python3 tests/bench/bench_backup.py [--rows 100000] [--files 1000] [--repeat 3] [--json out.json]

Builds a private MariaDB (loopback only) with one AnQiCMS-like instance (websites + archives with text and
attachments), a site root with uploads, and times in the same run, alternating:
  baseline backup   set -o pipefail; mariadb-dump <same options> db | gzip > db.sql.gz; tar czf files.tar.gz ...
  module backup     python -m ...modules.backup (dump, gzip, sha256 of everything, tar.gz, manifest, rename)
  baseline restore  gunzip < db.sql.gz | mariadb newdb; tar xzf files.tar.gz -C dir
  module restore    python -m ...modules.restore (sha256 verification first, staging DB, RENAME TABLE swap,
                    staged files swapped by rename)
The goal is a ratio (module / baseline, medians) of at most 1.15 for both.

Then the cost of retention's checksum checks (--keep K, default 7): with K backups of the same data in place,
a module backup without retention and one with keep=K (which checks the sha256 of the K-1 older kept backups
and of the one that expires) alternate; the module's own ``retention_check`` (backups, bytes, seconds) is
reported with both wall times.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / '.collections'))

from ansible_collections.opsguard.anqicms.tests.utils.mariadb import PrivateMariaDB  # noqa: E402  pylint: disable=wrong-import-position

PYTHON = str(REPO / '.venv' / 'bin' / 'python') if (REPO / '.venv' / 'bin' / 'python').exists() else sys.executable
DUMP_OPTS = '--single-transaction --quick --routines --triggers --hex-blob --events --default-character-set=utf8mb4'


def module(name: str, args: dict, work: pathlib.Path) -> dict:
    argfile = work / ('args-%s.json' % uuid.uuid4().hex)
    argfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    try:
        proc = subprocess.run([PYTHON, '-m', 'ansible_collections.opsguard.anqicms.plugins.modules.' + name, str(argfile)],
                              capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / '.collections')),
                              timeout=1800, check=False)
    finally:
        argfile.unlink()
    result = json.loads(proc.stdout)
    if result.get('failed'):
        raise SystemExit('%s failed: %s' % (name, result.get('msg')))
    return result


def sh(script: str) -> None:
    subprocess.run(['bash', '-c', 'set -euo pipefail\n' + script], check=True, timeout=1800)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(func, cpu: list | None = None) -> float:
    """Wall time of func(); its client-side CPU time (child processes) is appended to ``cpu``."""
    cpu_start = children_cpu()
    start = time.perf_counter()
    func()
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(round(children_cpu() - cpu_start, 3))
    return wall


def populate(db: PrivateMariaDB, root: pathlib.Path, rows: int, files: int) -> None:
    db.sql("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'bench-pw'; GRANT ALL ON *.* TO 'app'@'127.0.0.1';"
           "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;"
           "CREATE TABLE websites (id bigint unsigned PRIMARY KEY, root_path varchar(190), name varchar(190), mysql text, "
           "status tinyint, base_url varchar(190)) ENGINE=InnoDB;"
           "INSERT INTO websites VALUES (1, '%s', 'shop', NULL, 1, 'http://shop.test');"
           "CREATE TABLE archives (id bigint unsigned PRIMARY KEY, title varchar(250), content longtext, "
           "created_time int) ENGINE=InnoDB;"
           "INSERT INTO archives SELECT seq, CONCAT('title ', seq), CONCAT(REPEAT(CONCAT('<p>', MD5(seq), ' lorem ipsum dolor sit amet'), 12), "
           "SHA2(RAND(), 512), SHA2(RAND(), 512)), 1700000000 + seq FROM seq_1_to_%d;"
           "CREATE TABLE attachments (id bigint unsigned PRIMARY KEY, file_name varchar(250), file_md5 char(32), "
           "thumb blob) ENGINE=InnoDB;"
           "INSERT INTO attachments SELECT seq, CONCAT('upload-', seq, '.jpg'), MD5(seq), RANDOM_BYTES(1024) "
           "FROM seq_1_to_%d;" % (root, rows, max(1, rows // 10)))
    uploads = root / 'public' / 'uploads'
    uploads.mkdir(parents=True)
    for i in range(files):
        (uploads / ('upload-%d.jpg' % i)).write_bytes(os.urandom(16384 + (i % 7) * 4096))
    (root / 'template' / 'default').mkdir(parents=True)
    for i in range(50):
        (root / 'template' / 'default' / ('page%d.html' % i)).write_text('<html>{{ archive.Title }}</html>\n' * 200)
    (root / 'data').mkdir()
    (root / 'config.json').write_text(json.dumps({'mysql': {'database': 'shop', 'user': 'app', 'password': 'bench-pw',
                                                            'host': '127.0.0.1', 'port': db.port}, 'server': {'port': 1}}))


def measure_retention(root: pathlib.Path, dest: pathlib.Path, work: pathlib.Path, keep: int, repeat: int) -> dict:
    """Wall time of a backup without retention and with keep=``keep`` (checksums of the kept and expiring backups)."""
    instance_dir = dest / root.name
    while len([p for p in instance_dir.iterdir() if not p.name.startswith('.')]) < keep:
        module('backup', {'path': str(root), 'dest': str(dest)}, work)
    plain, kept, checks = [], [], []
    for rep in range(repeat):
        def without() -> None:
            plain.append(timed(lambda: module('backup', {'path': str(root), 'dest': str(dest)}, work)))

        def with_keep() -> None:
            out: dict = {}
            kept.append(timed(lambda: out.update(module('backup', {'path': str(root), 'dest': str(dest), 'keep': keep}, work))))
            checks.append(out['retention_check'])
        for step in ([without, with_keep] if rep % 2 == 0 else [with_keep, without]):
            step()
    seconds = statistics.median(c['seconds'] for c in checks)
    checked_bytes = statistics.median(c['bytes'] for c in checks)
    return {
        'keep': keep, 'checked_backups': statistics.median(c['backups'] for c in checks), 'checked_bytes': checked_bytes,
        'check_seconds': round(seconds, 3), 'check_MB_per_s': round(checked_bytes / 1e6 / seconds, 1) if seconds else None,
        'backup_without_retention_s': round(statistics.median(plain), 3), 'backup_with_keep_s': round(statistics.median(kept), 3),
        'runs': {'without': plain, 'with_keep': kept, 'checks': checks},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=100000)
    parser.add_argument('--files', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--keep', type=int, default=7, help='retention to measure the checksum checks of (0: skip)')
    parser.add_argument('--json')
    opts = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix='bench-backup-'))
    db = PrivateMariaDB(str(work / 'db')).start()
    try:
        root = work / 'shop'
        root.mkdir()
        populate(db, root, opts.rows, opts.files)
        cnf = work / 'client.cnf'
        cnf.write_text('[client]\nuser=app\npassword=bench-pw\nhost=127.0.0.1\nport=%d\nprotocol=TCP\n' % db.port)
        cnf.chmod(0o600)
        dest = work / 'backups'
        base = work / 'baseline'
        times: dict = {'baseline_backup': [], 'module_backup': [], 'baseline_restore': [], 'module_restore': []}
        cpu: dict = dict((k, []) for k in times)
        sizes = {}
        items = 'config.json template public data'
        result: dict = {}

        def baseline_backup() -> None:
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            times['baseline_backup'].append(timed(lambda: sh(
                'mariadb-dump --defaults-file=%s %s shop | gzip > %s/db.sql.gz\ntar czf %s/files.tar.gz -C %s %s'
                % (cnf, DUMP_OPTS, base, base, root, items)), cpu['baseline_backup']))

        def module_backup() -> None:
            times['module_backup'].append(timed(lambda: result.update(
                module('backup', {'path': str(root), 'dest': str(dest), 'keep': 1}, work)), cpu['module_backup']))

        def baseline_restore() -> None:
            db.sql('DROP DATABASE IF EXISTS restored; CREATE DATABASE restored;')
            out = base / 'files'
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            times['baseline_restore'].append(timed(lambda: sh(
                'gunzip < %s/db.sql.gz | mariadb --defaults-file=%s restored\ntar xzf %s/files.tar.gz -C %s'
                % (base, cnf, base, out)), cpu['baseline_restore']))
            db.sql('DROP DATABASE restored;')

        def module_restore() -> None:
            times['module_restore'].append(timed(lambda: module('restore', {'path': str(root), 'dest': str(dest),
                                                                            'keep_previous': False}, work),
                                                 cpu['module_restore']))

        for rep in range(opts.repeat):
            # Alternate which side runs first so that neither always finds warm caches.
            order = [baseline_backup, module_backup] if rep % 2 == 0 else [module_backup, baseline_backup]
            order += [baseline_restore, module_restore] if rep % 2 == 0 else [module_restore, baseline_restore]
            for step in order:
                step()
            sizes = {'baseline_bytes': sum(p.stat().st_size for p in base.iterdir() if p.is_file()),
                     'module_bytes': result['total_size']}
        med = dict((k, round(statistics.median(v), 3)) for k, v in times.items())
        med_cpu = dict((k, round(statistics.median(v), 3)) for k, v in cpu.items())
        report = {
            'rows': opts.rows, 'files': opts.files, 'repeat': opts.repeat, 'runs_s': times, 'median_s': med,
            'client_cpu_s': cpu, 'median_client_cpu_s': med_cpu, 'loadavg_after': os.getloadavg()[0],
            'cpu_backup_ratio': round(med_cpu['module_backup'] / med_cpu['baseline_backup'], 3),
            'cpu_restore_ratio': round(med_cpu['module_restore'] / med_cpu['baseline_restore'], 3),
            'backup_ratio': round(med['module_backup'] / med['baseline_backup'], 3),
            'restore_ratio': round(med['module_restore'] / med['baseline_restore'], 3),
            'goal_ratio': 1.15, **sizes,
        }
        report['goal_met'] = report['backup_ratio'] <= 1.15 and report['restore_ratio'] <= 1.15
        if opts.keep > 0:
            report['retention'] = measure_retention(root, dest, work, opts.keep, opts.repeat)
        text = json.dumps(report, indent=2)
        sys.stdout.write(text + '\n')
        if opts.json:
            pathlib.Path(opts.json).write_text(text + '\n')
    finally:
        db.stop(remove=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
