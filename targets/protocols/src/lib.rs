//! faultline-protocols: pure protocol cores.
