//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CoreMetrics
import Synchronization

/// A handler that keeps its values between flushes (client-side aggregation) and writes them when the client
/// flushes: one line per key and interval instead of one per call.
protocol AggregatingHandler: AnyObject, Sendable {
    func flush(into sender: Sender)
}

/// A counter that sends one line per `increment` (`hits:1|c`).
final class CounterLines: CounterHandler, Sendable {
    let key: LineKey
    let sender: Sender

    init(key: LineKey, sender: Sender) {
        self.key = key
        self.sender = sender
    }

    func increment(by amount: Int64) { self.sender.line(self.key, amount) }

    func reset() {}
}

/// A counter that adds in place (one relaxed atomic add, no lock, no allocation) and sends its sum once an interval.
final class AggregatedCounter: CounterHandler, AggregatingHandler {
    let key: LineKey
    private let pending = Atomic<Int64>(0)

    init(key: LineKey) { self.key = key }

    @inline(__always)
    func increment(by amount: Int64) { self.pending.wrappingAdd(amount, ordering: .relaxed) }

    func reset() { self.pending.store(0, ordering: .relaxed) }

    func flush(into sender: Sender) {
        let sum = self.pending.exchange(0, ordering: .relaxed)
        if sum != 0 { sender.line(self.key, sum) }
    }
}

/// A floating-point counter: statsd counters take fractions (`bytes:0.5|c`). Aggregated, it adds in place.
final class FloatingPointCounter: FloatingPointCounterHandler, AggregatingHandler {
    let key: LineKey
    let sender: Sender
    let aggregates: Bool
    private let pending = AtomicDouble(0)

    init(key: LineKey, sender: Sender, aggregates: Bool) {
        self.key = key
        self.sender = sender
        self.aggregates = aggregates
    }

    func increment(by amount: Double) {
        if self.aggregates {
            self.pending.add(amount)
        } else {
            self.sender.line(self.key, amount)
        }
    }

    func reset() { self.pending.store(0) }

    func flush(into sender: Sender) {
        let sum = self.pending.exchange(0)
        if sum != 0 { sender.line(self.key, sum) }
    }
}

/// A gauge (swift-metrics' Meter, and a Recorder that does not aggregate). It keeps its value, so `increment` and
/// `decrement` move the value the app sees, and sends the value itself, never a delta: a negative value goes as
/// `0|g` then `-5|g` in one datagram, which every statsd reads as -5 (a bare `-5|g` would subtract 5). Aggregated,
/// only the last value of an interval is sent.
final class Gauge: MeterHandler, RecorderHandler, AggregatingHandler {
    let key: LineKey
    let sender: Sender
    let aggregates: Bool
    private let value = AtomicDouble(0)
    private let changed = Atomic<Bool>(false)

    init(key: LineKey, sender: Sender, aggregates: Bool) {
        self.key = key
        self.sender = sender
        self.aggregates = aggregates
    }

    func set(_ value: Int64) { self.set(Double(value)) }
    func set(_ value: Double) {
        self.value.store(value)
        self.didChange(to: value)
    }
    func increment(by amount: Double) { self.didChange(to: self.value.add(amount)) }
    func decrement(by amount: Double) { self.didChange(to: self.value.add(-amount)) }
    func record(_ value: Int64) { self.set(Double(value)) }
    func record(_ value: Double) { self.set(value) }

    private func didChange(to value: Double) {
        if self.aggregates {
            self.changed.store(true, ordering: .releasing)
        } else {
            Self.write(value, key: self.key, into: self.sender)
        }
    }

    func flush(into sender: Sender) {
        guard self.changed.exchange(false, ordering: .acquiringAndReleasing) else { return }
        Self.write(self.value.load(), key: self.key, into: sender)
    }

    static func write(_ value: Double, key: LineKey, into sender: Sender) {
        sender.append(lines: value < 0 ? 2 : 1) { bytes in
            if value < 0 {
                bytes.append(contentsOf: key.head)
                bytes.append(UInt8(ascii: "0"))
                bytes.append(contentsOf: key.tail)
            }
            bytes.append(contentsOf: key.head)
            guard LineFormat.append(value, to: &bytes) else { return false }
            bytes.append(contentsOf: key.tail)
            return true
        }
    }
}

/// A timer (`ms`, in milliseconds from nanoseconds, exactly) or an aggregating Recorder (`ms` or `d`): every value
/// is sent, since the server computes percentiles from all of them.
final class Samples: TimerHandler, RecorderHandler {
    let key: LineKey
    let sender: Sender

    init(key: LineKey, sender: Sender) {
        self.key = key
        self.sender = sender
    }

    func recordNanoseconds(_ duration: Int64) { self.sender.line(self.key, nanoseconds: duration) }
    func record(_ value: Int64) { self.sender.line(self.key, value) }
    func record(_ value: Double) { self.sender.line(self.key, value) }
}

/// A Double updated atomically (its bits in an `Atomic<UInt64>`, added with compare-and-exchange).
final class AtomicDouble: Sendable {
    private let bits: Atomic<UInt64>

    init(_ value: Double) { self.bits = Atomic(value.bitPattern) }

    func load() -> Double { Double(bitPattern: self.bits.load(ordering: .relaxed)) }
    func store(_ value: Double) { self.bits.store(value.bitPattern, ordering: .relaxed) }
    func exchange(_ value: Double) -> Double {
        Double(bitPattern: self.bits.exchange(value.bitPattern, ordering: .relaxed))
    }

    /// Adds `amount` and returns the new value.
    @discardableResult
    func add(_ amount: Double) -> Double {
        var old = self.bits.load(ordering: .relaxed)
        while true {
            let new = Double(bitPattern: old) + amount
            let (exchanged, current) = self.bits.compareExchange(
                expected: old, desired: new.bitPattern, ordering: .relaxed)
            if exchanged { return new }
            old = current
        }
    }
}
