"""llmsim: does an LLM serving engine, or a network of LLM agents, keep up with its load?

Public API::

    sc = llmsim.load_scenario("scenarios/w1.toml")
    res = llmsim.simulate(sc)            # Result: .summary, .timeseries, .requests, .verdict
    llmsim.analyze(sc)                   # theory: load, capacities, drift
    llmsim.capacity_search(sc)           # critical arrival rate by simulation
"""

from llmsim.budget import Limits
from llmsim.config import (BatchTime, EngineConfig, Scenario, Step, Workflow, load_scenario,
                           loads_scenario, scenario_from_table, validate)
from llmsim.schedulers import SCHEDULERS
from llmsim.simulate import Result, Simulation, replicate, simulate
from llmsim.stability import Verdict, verdict, verdict_from_runs
from llmsim.theory import analyze
from llmsim.workload import ConfigError

__all__ = ["BatchTime", "ConfigError", "EngineConfig", "Limits", "Result", "SCHEDULERS", "Scenario",
           "Simulation", "Step", "Verdict", "Workflow", "analyze", "load_scenario",
           "loads_scenario", "replicate", "scenario_from_table", "simulate", "validate",
           "verdict", "verdict_from_runs"]
