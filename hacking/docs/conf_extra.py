
# --- opsguard.anqicms: appended to the conf.py that `antsibull-docs sphinx-init` writes (hacking/docs/build.sh) ---
# pylint: disable=undefined-variable,invalid-name
# The guides in docs/ are Markdown.
extensions.append('myst_parser')  # noqa: F821 (defined above in the generated conf.py)
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 4
# The site is built without network access: no intersphinx inventories. References to other collections and to
# ansible-core's reference pages link to docs.ansible.com instead (opsguard_external_reference below).
intersphinx_mapping = {}
OPSGUARD_ANSIBLE_DOCS = 'https://docs.ansible.com/ansible/latest/'
OPSGUARD_CORE_LABELS = {
    'common_return_values': 'reference_appendices/common_return_values.html',
    'ansible_configuration_settings': 'reference_appendices/config.html',
}


def opsguard_external_reference(app, env, node, contnode):  # pylint: disable=unused-argument
    """Resolve a :ref: to another collection's plugin or to an ansible-core reference page."""
    from docutils import nodes  # pylint: disable=import-outside-toplevel
    if node.get('reftype') != 'ref':
        return None
    target = node.get('reftarget', '')
    url = None
    parts = target.split('.')
    if len(parts) == 4 and parts[0] == 'ansible_collections' and parts[1:3] != ['opsguard', 'anqicms']:
        url = '{0}collections/{1}/{2}/{3}.html'.format(OPSGUARD_ANSIBLE_DOCS, parts[1], parts[2], parts[3])
    elif target in OPSGUARD_CORE_LABELS:
        url = OPSGUARD_ANSIBLE_DOCS + OPSGUARD_CORE_LABELS[target]
    if url is None:
        return None
    reference = nodes.reference('', '', internal=False, refuri=url)
    reference.append(contnode)
    return reference


def setup(app):
    """Sphinx hook of this conf.py."""
    app.connect('missing-reference', opsguard_external_reference)
