//! faultline-reports.
