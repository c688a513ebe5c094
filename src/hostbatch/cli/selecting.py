"""From the command line's selection to finished hosts: the inventory read, the hosts
selected (history shortcuts resolved), credentials asked for on the terminal.

Shared by ``batch_run``/``batch_scp``/``keyscan`` (:mod:`.main`) and ``hostbatch console``
(:mod:`.console`), which also resolves the hosts its ``:add`` names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hostbatch.cli.environment import Environment
from hostbatch.errors import InventoryError
from hostbatch.inventory.model import HostSpec

if TYPE_CHECKING:
    from hostbatch.cli.arguments import SelectionOptions
    from hostbatch.inventory.model import Inventory
    from hostbatch.prepare import HostOverrides
    from hostbatch.selection import Selection


def history_selection(selection: Selection, inventory: Inventory, env: Environment
                      ) -> Selection:
    """``selection`` with its ``@failed``/``@ok`` shortcuts replaced by host names."""
    from hostbatch.history.selectors import resolve_shortcuts
    from hostbatch.history.store import history_path

    return resolve_shortcuts(selection, history_path(env.environ, env.home),
                             inventory.hosts.keys(), inventory.path)


def settle_on_terminal(hosts: list[HostSpec], overrides: HostOverrides, env: Environment,
                        inventory: str, warn: Callable[[str], None]) -> list[HostSpec]:
    """Turn password sources into passwords and ask what must be asked (the password, key
    passphrases, the sudo password) on the terminal, once the run is confirmed."""
    from hostbatch.cli.prompt import terminal_prompt
    from hostbatch.prepare import settle_credentials

    prompt = terminal_prompt()
    sudo_prompt = prompt
    if sudo_prompt is None and env.stdin_isatty:
        import getpass  # reads the terminal on stdin when there is no controlling one

        sudo_prompt = getpass.getpass
    return settle_credentials(hosts, overrides, env.environ, prompt=prompt, warn=warn,
                              inventory_path=inventory, sudo_prompt=sudo_prompt)


def select_hosts(picked: SelectionOptions, env: Environment, warn: Callable[[str], None]
            ) -> tuple[Inventory, list[HostSpec]]:
    """The inventory (with the ``-H`` hosts added) and the selected hosts in it.

    With only ``-H`` hosts, an inventory is read if one is found (for its ``[defaults]``),
    and none is needed.
    """
    from hostbatch.history.selectors import uses_history
    from hostbatch.inventory.adhoc import with_adhoc
    from hostbatch.inventory.loader import load_inventory, locate_inventory
    from hostbatch.selection import select

    selection = picked.selection
    try:
        path = locate_inventory(picked.inventory, env.environ)
    except InventoryError:
        if not selection.adhoc_only:
            raise
        path = None
    inventory = with_adhoc(None if path is None else load_inventory(
        path, warn=warn, environ=env.environ, inventory_format=picked.inventory_format,
        insecure=picked.insecure_inventory), selection.adhoc)
    if uses_history(selection):
        selection = history_selection(selection, inventory, env)
    return inventory, select(inventory, selection, warn=warn)
