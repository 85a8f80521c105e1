"""The scenario ``lineagerun demo`` (and ``make demo``) runs: a short
runtime run on a local 2-node cluster started by the runner, under faults
the runtime recovers from today (docs/chaos.md, "The demo"). Embedded
here, not read from chaos/, so an installed package has it too."""

DEMO_SCENARIO_TOML = """
name = "demo"
description = '''A parameter-server actor fed by gradient tasks on a 2-node cluster, while the nemesis
kills the actor's process (restarted, calls replayed), kills worker processes mid-task (tasks
retried) and slows the second node's links (chaos proxies). The weights must be exact.'''
duration_s = 14
seed = 2024

[cluster]
kind = "runtime"
nodes = 2
cpus = 2

[workload]
kind = "parameter-server"
workers = 4
dim = 16

[[faults]]
action = "kill"
target = "actor"
at_s = [3, 11]

[[faults]]
action = "kill"
targets = ["worker:0", "worker:1"]
at_s = [4, 6]

[[faults]]
action = "latency"
target = "node:1"
at_s = 5
duration_s = 2
attributes = { latency = 50, jitter = 20 }

[[faults]]
action = "kill"
target = "node:1"
at_s = 8
duration_s = 2

[invariants]
result_matches_fault_free = true
acknowledged_writes_lost = 0
min_operations_ok = 5
"""
