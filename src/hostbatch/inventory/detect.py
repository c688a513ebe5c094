"""Tell an Ansible INI inventory from a hostbatch one, cheaply.

Kept apart from :mod:`hostbatch.inventory.ansible` so every run can ask without importing the
Ansible parser (``ast``, ``shlex``: a few milliseconds) unless the file is an Ansible one.
"""

from __future__ import annotations

import re

_SECTION_LINE = re.compile(r"^\s*\[([^\]]*)\]")
_HOSTBATCH_SECTION = re.compile(r"^(defaults|host:.+|group:.+)$")
_ANSIBLE_SECTION = re.compile(r"^[^:\]\s]+:(children|vars)$")
_KEY_VALUE = re.compile(r"^[^\s=:]+\s*=")


def looks_like_ansible(text: str) -> bool:
    """True when ``text`` is an Ansible INI inventory rather than a hostbatch one.

    A file with any hostbatch section (``[defaults]``, ``[host:NAME]``, ``[group:NAME]``, but
    not Ansible's ``[host:vars]``-style ones) is hostbatch, so a typo in a hostbatch file gets
    hostbatch's error messages. Otherwise it is Ansible when it has a line before any section,
    or an Ansible sign: a ``:children``/``:vars`` section, a bare host line (not
    ``key = value``), or an ``ansible_`` variable.
    """
    other_sections = False
    ansible_signs = False
    seen_section = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        section = _SECTION_LINE.match(line)
        if section:
            seen_section = True
            name = section.group(1).strip()
            if _ANSIBLE_SECTION.match(name):
                ansible_signs = True
            elif _HOSTBATCH_SECTION.match(name):
                return False
            other_sections = True
            continue
        if not seen_section or not _KEY_VALUE.match(line) or "ansible_" in line:
            ansible_signs = True
    return ansible_signs and (other_sections or not seen_section)
