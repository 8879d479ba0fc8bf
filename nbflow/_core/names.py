"""Run names: memorable adjective-animal flow run names and templated custom names."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.exceptions import ArgumentTypeError, InvalidArgumentError

__all__ = ["generate_run_name", "format_run_name"]

_ADJECTIVES = (
    "amber agile ancient arctic azure bold brave bright brisk calm clever cobalt copper cosmic crimson "
    "curious daring dazzling eager electric emerald fearless fierce gentle gilded glowing golden "
    "graceful hidden humble icy indigo jade jolly keen lively lucky lunar magenta mellow mighty misty "
    "modest nimble noble olive onyx opal patient polar proud quick quiet rapid rustic sage scarlet "
    "serene sharp silent silver smart solar spry steady stellar stoic sturdy sunny swift tan teal "
    "tidy tireless topaz tough tranquil ultra vagrant valiant vermilion vivid warm wise witty zealous"
).split()
_ANIMALS = (
    "albatross alligator alpaca antelope badger beaver bison bobcat buffalo camel caracal cheetah "
    "chipmunk cobra condor cougar coyote crane crow deer dingo dolphin donkey dove eagle eel elk "
    "falcon ferret finch flamingo fox gazelle gecko gibbon goose gopher griffin hare hawk hedgehog "
    "heron hornet hyena ibex jackal jaguar kangaroo kestrel kingfisher koala lemur leopard lion "
    "llama lynx macaw magpie manatee marmot marten mink mole moose narwhal newt ocelot octopus "
    "orca osprey otter owl panda panther parrot pelican penguin puffin quail raccoon raven seal "
    "shark sparrow squid stork swan tapir tiger toucan turtle viper walrus weasel whale wolf wombat yak"
).split()


def generate_run_name(rng: random.Random | None = None) -> str:
    """A memorable name such as ``crimson-hawk`` (about 9,000 combinations)."""
    choice = (rng or random).choice
    return f"{choice(_ADJECTIVES)}-{choice(_ANIMALS)}"


def format_run_name(template: str | Callable[[], str], parameters: Mapping[str, Any], what: str) -> str:
    """``"etl-{date}"`` formatted with the run's parameters, or the string a callable returns.

    A template naming an unknown parameter raises ``ValueError`` saying which names exist.
    """
    if callable(template):
        name = template()
        if not isinstance(name, str):
            raise ArgumentTypeError(f"{what} callable must return a str, got {type(name).__name__}")
        return name
    try:
        return template.format(**parameters)
    except (KeyError, IndexError) as exc:
        raise InvalidArgumentError(
            f"{what} template {template!r} refers to {exc}, which is not a parameter; "
            f"available: {', '.join(parameters) or '(none)'}"
        ) from None
