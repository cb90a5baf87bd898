"""The spec: YAML with positions, the JSON Schema, defaults and rules, the task table, AutoTrain configs."""
