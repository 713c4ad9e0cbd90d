//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Testing

/// The end-to-end suites run one test at a time: each starts real daemons, carbon-cache or the conformance
/// harness (which times its sends against 1 s flushes), and two cores are not enough to run them side by side.
@Suite(.serialized)
enum EndToEnd {}
