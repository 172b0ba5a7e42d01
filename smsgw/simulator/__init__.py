"""An SMSC simulator: a Trio SMPP 3.4 server for tests, benchmarks and operators.

``smsgw simulator --help`` runs it from the command line; from Python::

    from smsgw.simulator import Simulator, SimulatorConfig, Faults, Account

    sim = Simulator(SimulatorConfig(accounts=[Account("esme", "secret")], seed=1))
    port = await nursery.start(sim.serve)

See ``docs/simulator.md`` for every option.
"""

from smpp_codec.segment import SplitMode
from smpp_codec.text import Encoding

from .config import (
    Account,
    IdFormat,
    ReceiptConfig,
    ReceiptIdForm,
    SimulatorConfig,
    config_from_mapping,
    faults_from_mapping,
    load_config,
)
from .faults import Faults, GarbageMode
from .mo import MoResult
from .server import NoReceiverError, Simulator
from .stats import Stats
from .values import ConfigError

__all__ = [
    "Account",
    "ConfigError",
    "Encoding",
    "Faults",
    "GarbageMode",
    "IdFormat",
    "MoResult",
    "NoReceiverError",
    "ReceiptConfig",
    "ReceiptIdForm",
    "Simulator",
    "SimulatorConfig",
    "SplitMode",
    "Stats",
    "config_from_mapping",
    "faults_from_mapping",
    "load_config",
]
