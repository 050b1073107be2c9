# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make docs` (hacking/docs/build.sh) builds a site with a page for every module, filter, role and guide.

The site is built once per run into a temporary directory (about 20 s); what the collection has is read from
ansible-doc and from the tree, so new plugins, roles and guides are checked without changing this file.
"""
from __future__ import annotations

import html
import json
import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(os.environ.get('VENV', ROOT / '.venv')) / 'bin'
COLLECTION = 'opsguard.anqicms'
PAGES = pathlib.Path('collections') / 'opsguard' / 'anqicms'


def ansible_doc(*args: str) -> dict:
    """ansible-doc --json output for this collection (the collection as linked by hacking/setup.sh)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.collections'))
    done = subprocess.run([str(VENV_BIN / 'ansible-doc'), '--json', *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)


def page_text(path: pathlib.Path) -> str:
    """The visible text of an HTML page, roughly: tags dropped, entities decoded."""
    return html.unescape(re.sub(r'<[^>]+>', ' ', path.read_text(encoding='utf-8')))


@pytest.fixture(scope='module')
def site(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The HTML site, built by the same script as `make docs`."""
    out = tmp_path_factory.mktemp('docs')
    env = dict(os.environ, OPSGUARD_DOCS_OUT=str(out), PATH='%s:%s' % (VENV_BIN, os.environ.get('PATH', '')))
    subprocess.run([str(ROOT / 'hacking' / 'docs' / 'build.sh')], cwd=ROOT, env=env, check=True, timeout=600)
    return out / 'html'


MODULES = sorted(p.stem for p in (ROOT / 'plugins' / 'modules').glob('*.py') if p.stem != '__init__')
ROLES = sorted(p.name for p in (ROOT / 'roles').iterdir() if (p / 'meta' / 'argument_specs.yml').is_file())
GUIDES = sorted(str(p.relative_to(ROOT / 'docs').with_suffix('')) for p in (ROOT / 'docs').rglob('*.md'))


def test_start_page_links_the_collection_index(site: pathlib.Path) -> None:
    start = (site / 'index.html').read_text(encoding='utf-8')
    assert 'collections/opsguard/anqicms/index.html' in start
    assert 'guide/index.html' in start


@pytest.mark.parametrize('module', MODULES)
def test_module_page_documents_every_option(site: pathlib.Path, module: str) -> None:
    doc = ansible_doc('-t', 'module', '%s.%s' % (COLLECTION, module))['%s.%s' % (COLLECTION, module)]['doc']
    text = page_text(site / PAGES / ('%s_module.html' % module))
    assert doc['short_description'].split()[0] in text
    missing = [name for name in doc.get('options', {}) if name not in text]
    assert not missing, 'options missing on the %s page: %s' % (module, missing)


def test_every_filter_has_a_page(site: pathlib.Path) -> None:
    filters = sorted(ansible_doc('-t', 'filter', '--list', COLLECTION))
    assert filters, 'ansible-doc lists no filter of %s' % COLLECTION
    missing = [name for name in filters if not (site / PAGES / ('%s_filter.html' % name.split('.')[-1])).is_file()]
    assert not missing, 'filters without a page: %s' % missing


@pytest.mark.parametrize('role', ROLES)
def test_role_page_documents_the_main_entry_point(site: pathlib.Path, role: str) -> None:
    doc = ansible_doc('-t', 'role', '%s.%s' % (COLLECTION, role))['%s.%s' % (COLLECTION, role)]
    text = page_text(site / PAGES / ('%s_role.html' % role))
    missing = [name for name in doc['entry_points']['main'].get('options', {}) if name not in text]
    assert not missing, 'options of the %s role missing on its page: %s' % (role, missing)


@pytest.mark.parametrize('guide', GUIDES)
def test_guide_page(site: pathlib.Path, guide: str) -> None:
    source = (ROOT / 'docs' / (guide + '.md')).read_text(encoding='utf-8')
    title = next(line.lstrip('#').strip() for line in source.splitlines() if line.startswith('#'))
    text = page_text(site / 'guide' / (guide + '.html'))
    assert re.sub(r'[`*]', '', title) in text
