//! faultline-core: the control plane.
