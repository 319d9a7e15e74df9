//! Per-attempt cgroups: cgroup v1 (hybrid, as on the development machines) and pure v2.
