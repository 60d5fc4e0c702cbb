"""The `midicopilot` command line: thin click commands over importable modules.

Each area registers its own commands from its own module, so `--help` stays fast (heavy imports
such as torch happen inside the commands that need them).
"""
import click

from midicopilot.host import (
    cmd_eval,
    cmd_events,
    cmd_live,
    cmd_presets,
    cmd_setlist,
    cmd_train,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="midicopilot")
def main() -> None:
    """midicopilot: a real-time MIDI copilot that plays channel 0 along with you."""


for _module in (cmd_events, cmd_train, cmd_eval, cmd_live, cmd_presets, cmd_setlist):
    _module.register(main)


if __name__ == "__main__":
    main()
