//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Sidestat's version: the one place it is written (`sidestat --version`, release archives).
public let sidestatVersion = "0.9.0"
