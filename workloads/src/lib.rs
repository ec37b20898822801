//! faultline-workloads.
