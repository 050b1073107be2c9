# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Java runtime ansible-rulebook needs (its Drools rule engine), for the tests and the self-healing demo."""
from __future__ import annotations

import glob
import os
import shutil


def java_home() -> str:
    """A Java 17+ home for ansible-rulebook: JAVA_HOME when it holds a JVM, else the java on PATH, else /usr/lib/jvm.

    RuntimeError when there is none."""
    candidates = [os.environ.get('JAVA_HOME', '')]
    java = shutil.which('java')
    if java:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(java))))
    candidates.extend(sorted(glob.glob('/usr/lib/jvm/java-*-openjdk-*'), reverse=True))
    for home in candidates:
        if home and os.access(os.path.join(home, 'bin', 'java'), os.X_OK):
            return home
    raise RuntimeError('ansible-rulebook needs a Java 17 runtime: install openjdk-17-jre-headless (hacking/apt-packages.txt, '
                       'make setup as root) or set JAVA_HOME')
