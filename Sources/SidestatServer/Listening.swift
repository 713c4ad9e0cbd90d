//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listener that could not be opened, in one line: which listener, where, and why
/// (`cannot listen on the management port 127.0.0.1:8126: address already in use`).
public struct ListenError: Error, CustomStringConvertible {
    public var description: String

    init(description: String) { self.description = description }

    init(_ listener: String, address: String, port: Int, reason: String) {
        let place = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
        self.description = "cannot listen on \(listener) \(place): \(reason)"
    }

    init(_ listener: String, address: String, port: Int, errno code: Int32) {
        self.init(listener, address: address, port: port, reason: Self.reason(code))
    }

    init(_ listener: String, address: String, port: Int, error: any Error) {
        if let error = error as? IOError {
            self.init(listener, address: address, port: port, errno: error.errnoCode)
        } else {
            self.init(listener, address: address, port: port, reason: "\(error)")
        }
    }

    static func reason(_ code: Int32) -> String {
        switch code {
        case EADDRINUSE: return "address already in use (is another statsd or Sidestat running?)"
        case EACCES: return "permission denied (ports below 1024 need root)"
        case EADDRNOTAVAIL: return "address not available on this machine"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}

extension ServerBootstrap {
    /// A TCP server bootstrap as every Sidestat listener uses it: SO_REUSEADDR, so that a restart binds at once
    /// even while the last connections of the previous process are in TIME-WAIT, and `AcceptPause`, so that running
    /// out of descriptors never makes it spin.
    static func sidestat(backlog: Int32, registry: ConnectionRegistry, logger: Logger, kind: String) -> ServerBootstrap {
        ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptPause(registry: registry, logger: logger, kind: kind))
                }
            }
    }
}
