//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// Where a key's bytes live inside an arena.
public struct ByteRange: Sendable, Hashable {
    public var offset: UInt32
    public var length: UInt32

    public init(offset: UInt32, length: UInt32) {
        self.offset = offset
        self.length = length
    }

    public var range: Range<Int> { Int(self.offset)..<(Int(self.offset) + Int(self.length)) }
}

/// A hash table keyed by byte strings, with the keys stored once in an arena.
///
/// Looking up a key that is already present costs no allocation: the bytes are hashed and compared in place.
/// Entries keep their insertion order (as a JavaScript object does), which is the order flushes and
/// management dumps use. Removal is done in bulk with `removeAll(where:)`, which compacts the arena.
/// Not thread-safe: one owner (an ingest shard, under its lock).
public struct ByteKeyTable<Value> {
    // Sendable when its values are: see the extension below.
    public struct Entry {
        public var key: ByteRange
        /// The key's first 16 bytes (`ScannedKey.prefix0` and `prefix1`): most keys compare without the arena.
        var prefix0: UInt64
        var prefix1: UInt64
        public var value: Value
    }

    public private(set) var arena: [UInt8] = []
    public private(set) var entries: [Entry] = []
    /// Open addressing with linear probing from the slot the hash's high bits name. A slot is 0 when empty,
    /// otherwise the high 32 bits of the key's hash and the entry index + 1 in the low half, so that most mismatches
    /// are rejected without touching the entry or the key bytes.
    private var slots: [UInt64] = []
    private var mask = 0
    /// 64 - log2(slot count): a hash's home slot is `hash >> shift`.
    private var shift = 64

    public init() {}

    public var count: Int { self.entries.count }
    public var isEmpty: Bool { self.entries.isEmpty }

    /// Hashes a byte string (`ByteScan.hashKey`, which the parser also computes while it reads a key).
    @inline(__always)
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        ByteScan.hashKey(key)
    }

    /// The index of `key`'s entry, if present.
    public func find(_ key: UnsafeRawBufferPointer) -> Int? {
        self.find(ScannedKey(key))
    }

    /// The index of `key`'s entry, if present.
    @inline(__always)
    public func find(_ key: ScannedKey) -> Int? {
        let mask = self.mask
        let shift = self.shift
        return self.slots.withUnsafeBufferPointer { slots in
            self.entries.withUnsafeBufferPointer { entries in
                self.arena.withUnsafeBytes { arena in
                    Self.probe(
                        key, slots: slots.isEmpty ? nil : slots.baseAddress, mask: mask, shift: shift,
                        entries: entries.baseAddress, arena: arena.baseAddress)
                }
            }
        }
    }

    /// Linear probing for `key`: the index of its entry, if present.
    @inline(__always)
    static func probe(
        _ key: ScannedKey, slots: UnsafePointer<UInt64>?, mask: Int, shift: Int, entries: UnsafePointer<Entry>?,
        arena: UnsafeRawPointer?
    ) -> Int? {
        // An empty table has no slots (nil) and a mask of 0; every other has 16 or more slots, some of them empty.
        guard let slots, let entries else { return nil }
        let tag = key.hash & 0xFFFF_FFFF_0000_0000
        let count = key.bytes.count
        var slot = Int(truncatingIfNeeded: key.hash &>> UInt64(truncatingIfNeeded: shift))
        while true {
            let stored = slots[slot]
            if stored == 0 { return nil }
            if stored & 0xFFFF_FFFF_0000_0000 == tag {
                let index = Int(truncatingIfNeeded: stored & 0xFFFF_FFFF) &- 1
                let entry = entries + index
                if Int(entry.pointee.key.length) == count, entry.pointee.prefix0 == key.prefix0,
                    entry.pointee.prefix1 == key.prefix1,
                    count <= 16 || Self.restEqual(arena.unsafelyUnwrapped + Int(entry.pointee.key.offset), key.bytes)
                {
                    return index
                }
            }
            slot = (slot &+ 1) & mask
        }
    }

    /// Compares the bytes after the first 16 of a stored key with `key`'s (of the same length), eight at a time.
    /// Stored keys are zero-padded to a whole number of words in the arena, so only the probe's last word needs care.
    @inline(never)
    static func restEqual(_ stored: UnsafeRawPointer, _ key: UnsafeRawBufferPointer) -> Bool {
        let count = key.count
        let probe = key.baseAddress!
        var index = 16
        while index &+ 8 <= count {
            if stored.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                != probe.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            {
                return false
            }
            index &+= 8
        }
        return index == count
            || stored.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                == ByteScan.word(probe, at: index, end: count)
    }

    /// Lookups with in-place updates of values, and no insertion: the ingest hot path's view of a table.
    public struct Lookup {
        let slots: UnsafePointer<UInt64>?
        let mask: Int
        let shift: Int
        let entries: UnsafeMutablePointer<Entry>?
        let arena: UnsafeRawPointer?

        /// The entry for `key` (its `value` may be changed in place), if the table holds it.
        @inline(__always)
        public func entry(for key: ScannedKey) -> UnsafeMutablePointer<Entry>? {
            guard
                let index = ByteKeyTable.probe(
                    key, slots: self.slots, mask: self.mask, shift: self.shift, entries: UnsafePointer(self.entries),
                    arena: self.arena)
            else { return nil }
            return self.entries.unsafelyUnwrapped + index
        }
    }

    /// Calls `body` with a `Lookup` of this table, valid only during the call. (All three arrays are taken with
    /// mutable access, which costs a uniqueness check; read-only access would retain and release each one.)
    @inline(__always)
    public mutating func withLookup<R>(_ body: (Lookup) throws -> R) rethrows -> R {
        let mask = self.mask
        let shift = self.shift
        return try self.slots.withUnsafeMutableBufferPointer { slots in
            try self.arena.withUnsafeMutableBytes { arena in
                try self.entries.withUnsafeMutableBufferPointer { entries in
                    try body(
                        Lookup(
                            slots: slots.isEmpty ? nil : UnsafePointer(slots.baseAddress), mask: mask, shift: shift,
                            entries: entries.baseAddress, arena: UnsafeRawPointer(arena.baseAddress)))
                }
            }
        }
    }

    /// Bytes of key storage in use (keys padded to whole words).
    public var arenaBytes: Int { self.arena.count }

    /// The index of `key`'s entry, inserting one made by `makeValue` when the key is new.
    public mutating func findOrInsert(_ key: UnsafeRawBufferPointer, _ makeValue: () -> Value) -> Int {
        let scanned = ScannedKey(key)
        if let index = self.find(scanned) { return index }
        return self.insertNew(scanned, value: makeValue())
    }

    mutating func insertNew(_ key: ScannedKey, value: Value) -> Int {
        if (self.entries.count + 1) * 2 > self.slots.count {
            self.grow()
        }
        let offset = UInt32(self.arena.count)
        Self.appendPadded(key.bytes, to: &self.arena)
        let index = self.entries.count
        self.entries.append(
            Entry(
                key: ByteRange(offset: offset, length: UInt32(key.bytes.count)), prefix0: key.prefix0,
                prefix1: key.prefix1, value: value))
        self.place(index: index, hash: key.hash)
        return index
    }

    /// Appends a key and zeros up to the next multiple of 8 bytes (keys start on word boundaries).
    static func appendPadded(_ key: UnsafeRawBufferPointer, to arena: inout [UInt8]) {
        arena.append(contentsOf: key)
        let padding = (8 &- key.count & 7) & 7
        if padding > 0 { arena.append(contentsOf: repeatElement(0, count: padding)) }
    }

    private mutating func place(index: Int, hash: UInt64) {
        var slot = Int(truncatingIfNeeded: hash &>> UInt64(self.shift))
        while self.slots[slot] != 0 { slot = (slot + 1) & self.mask }
        self.slots[slot] = (hash & 0xFFFF_FFFF_0000_0000) | UInt64(index + 1)
    }

    private mutating func grow() {
        let capacity = max(16, self.slots.count * 2)
        self.rebuildSlots(capacity: capacity)
    }

    private mutating func rebuildSlots(capacity: Int) {
        self.slots = [UInt64](repeating: 0, count: capacity)
        self.mask = capacity - 1
        self.shift = 64 - capacity.trailingZeroBitCount
        for index in self.entries.indices {
            let range = self.entries[index].key
            let hash = self.arena.withUnsafeBytes { Self.hash(UnsafeRawBufferPointer(rebasing: $0[range.range])) }
            self.place(index: index, hash: hash)
        }
    }

    /// Updates the value for `key`, inserting `initial` first when the key is new: one lookup, one write.
    @inline(__always)
    public mutating func update(
        _ key: UnsafeRawBufferPointer, initial: @autoclosure () -> Value, _ body: (inout Value) -> Void
    ) {
        let scanned = ScannedKey(key)
        let index = self.find(scanned) ?? self.insertNew(scanned, value: initial())
        self.entries.withUnsafeMutableBufferPointer { body(&$0[index].value) }
    }

    /// Mutable access to one entry's value.
    public subscript(valueAt index: Int) -> Value {
        get { self.entries[index].value }
        _modify { yield &self.entries[index].value }
    }

    /// Calls `body` with the key bytes of the entry at `index`.
    public func withKey<R>(at index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let range = self.entries[index].key.range
        return try self.arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// The key of the entry at `index` as a string (for management dumps and logs).
    public func keyString(at index: Int) -> String {
        self.withKey(at: index) { String(decoding: $0, as: UTF8.self) }
    }

    /// Removes the entries for which `shouldRemove` is true, keeping the others in order, and compacts the
    /// arena. Keeps the storage's capacity when nothing is left, so a table emptied at every flush does not
    /// allocate again.
    public mutating func removeAll(where shouldRemove: (Int, inout Value) -> Bool) {
        var kept: [Entry] = []
        var removedAny = false
        for index in self.entries.indices {
            if shouldRemove(index, &self.entries[index].value) {
                removedAny = true
            } else {
                kept.append(self.entries[index])
            }
        }
        guard removedAny else { return }
        if kept.isEmpty {
            self.removeAll()
            return
        }
        var arena: [UInt8] = []
        arena.reserveCapacity(kept.reduce(0) { $0 + (Int($1.key.length) + 7) & ~7 })
        for index in kept.indices {
            let old = kept[index].key
            let offset = UInt32(arena.count)
            self.arena.withUnsafeBytes {
                Self.appendPadded(UnsafeRawBufferPointer(rebasing: $0[old.range]), to: &arena)
            }
            kept[index].key = ByteRange(offset: offset, length: old.length)
        }
        self.arena = arena
        self.entries = kept
        var capacity = 16
        while capacity < kept.count * 2 { capacity *= 2 }
        self.rebuildSlots(capacity: capacity)
    }

    /// Empties the table and keeps its capacity.
    public mutating func removeAll() {
        self.entries.removeAll(keepingCapacity: true)
        self.arena.removeAll(keepingCapacity: true)
        for index in self.slots.indices { self.slots[index] = 0 }
    }
}

extension ByteKeyTable: Sendable where Value: Sendable {}
extension ByteKeyTable.Entry: Sendable where Value: Sendable {}
