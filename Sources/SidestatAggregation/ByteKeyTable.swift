//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// Where a key's bytes live inside an arena: an offset and a length, and for a snapshot's keys the segment (which
/// arena: `MetricSnapshot.withKeyBytes`). 8 bytes.
public struct ByteRange: Sendable, Hashable {
    public var offset: UInt32
    /// The length in the low 24 bits (a key or set member is at most a 64 KiB line), the segment in the high 8.
    private var packed: UInt32

    public init(offset: UInt32, length: UInt32) {
        precondition(length <= ByteRange.maximumLength, "a key of \(length) bytes")
        self.offset = offset
        self.packed = length
    }

    public static let maximumLength: UInt32 = 0xFF_FFFF

    public var length: UInt32 { self.packed & ByteRange.maximumLength }
    /// 0 for an arena's own keys; a snapshot numbers the arenas it shares with the store's tables from 1.
    public var segment: Int { Int(self.packed &>> 24) }

    /// The same bytes, in segment `segment` of a snapshot.
    func inSegment(_ segment: Int) -> ByteRange {
        var range = self
        range.packed = self.length | (UInt32(segment) &<< 24)
        return range
    }

    /// The bytes' positions within their segment.
    public var range: Range<Int> { Int(self.offset)..<(Int(self.offset) + Int(self.length)) }
}

/// A key in a `ByteKeyTable`: where its bytes are, and its first 8 bytes (`ScannedKey.prefix0`), so that most
/// lookups compare a key without reading the arena. 16 bytes.
public struct ByteKeyEntry: Sendable {
    public var key: ByteRange
    var prefix0: UInt64
}

/// A hash table keyed by byte strings, with the keys stored once in an arena.
///
/// Looking up a key that is already present costs no allocation: the bytes are hashed and compared in place.
/// Entries keep their insertion order (as a JavaScript object does), which is the order flushes and
/// management dumps use. Removal is done in bulk with `removeAll(where:)`, which compacts the arena.
/// Not thread-safe: one owner (an ingest shard, under its lock).
///
/// A key costs 16 bytes of entry, its value in `values` (a parallel array, which a flush can take whole), 8 to 16
/// bytes of slots (4 bytes each, at most half of them used), and its bytes padded to 8 in the arena.
public struct ByteKeyTable<Value> {
    public private(set) var arena: [UInt8] = []
    public private(set) var entries: [ByteKeyEntry] = []
    public private(set) var values: [Value] = []
    /// Open addressing with linear probing from the slot the hash's high bits name. A slot is 0 when empty,
    /// otherwise the hash's top 8 bits over the entry index + 1 (24 bits), so that most mismatches are rejected
    /// without touching the entry.
    private var slots: [UInt32] = []
    private var mask = 0
    /// 64 - log2(slot count): a hash's home slot is `hash >> shift`.
    private var shift = 64

    /// The most keys a table holds (the slots' 24-bit index): `MetricStore` refuses new keys past it.
    public static var maximumCount: Int { 0xFF_FFFF - 1 }

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
        _ key: ScannedKey, slots: UnsafePointer<UInt32>?, mask: Int, shift: Int,
        entries: UnsafePointer<ByteKeyEntry>?, arena: UnsafeRawPointer?
    ) -> Int? {
        // An empty table has no slots (nil) and a mask of 0; every other has 16 or more slots, some of them empty.
        guard let slots, let entries else { return nil }
        let tag = UInt32(truncatingIfNeeded: key.hash &>> 56)
        let count = key.bytes.count
        var slot = Int(truncatingIfNeeded: key.hash &>> UInt64(truncatingIfNeeded: shift))
        while true {
            let stored = slots[slot]
            if stored == 0 { return nil }
            if stored &>> 24 == tag {
                let index = Int(truncatingIfNeeded: stored & 0xFF_FFFF) &- 1
                let entry = entries + index
                if Int(entry.pointee.key.length) == count, entry.pointee.prefix0 == key.prefix0 {
                    if count <= 8 { return index }
                    // Bytes 8 to 16 from the arena (zero-padded there as `prefix1` is), inline: most keys end by then.
                    let stored = arena.unsafelyUnwrapped + Int(entry.pointee.key.offset)
                    if stored.load(fromByteOffset: 8, as: UInt64.self) == key.prefix1,
                        count <= 16 || Self.restEqual(stored, key.bytes)
                    {
                        return index
                    }
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
        let slots: UnsafePointer<UInt32>?
        let mask: Int
        let shift: Int
        let entries: UnsafePointer<ByteKeyEntry>?
        let values: UnsafeMutablePointer<Value>?
        let arena: UnsafeRawPointer?

        /// The value for `key` (it may be changed in place), if the table holds the key.
        @inline(__always)
        public func value(for key: ScannedKey) -> UnsafeMutablePointer<Value>? {
            guard
                let index = ByteKeyTable.probe(
                    key, slots: self.slots, mask: self.mask, shift: self.shift, entries: self.entries,
                    arena: self.arena)
            else { return nil }
            return self.values.unsafelyUnwrapped + index
        }
    }

    /// Calls `body` with a `Lookup` of this table, valid only during the call. The slots and values are taken with
    /// mutable access (a uniqueness check); the entries and the arena, which a flush's snapshot may share, read-only
    /// (a retain and a release each), so that ingest never copies them while a flush reads them.
    @inline(__always)
    public mutating func withLookup<R>(_ body: (Lookup) throws -> R) rethrows -> R {
        let mask = self.mask
        let shift = self.shift
        return try self.slots.withUnsafeMutableBufferPointer { slots in
            try self.arena.withUnsafeBytes { arena in
                try self.entries.withUnsafeBufferPointer { entries in
                    try self.values.withUnsafeMutableBufferPointer { values in
                        try body(
                            Lookup(
                                slots: slots.isEmpty ? nil : UnsafePointer(slots.baseAddress), mask: mask, shift: shift,
                                entries: entries.baseAddress, values: values.baseAddress,
                                arena: arena.baseAddress))
                    }
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
        precondition(self.entries.count < Self.maximumCount, "a table of \(Self.maximumCount) keys is full")
        if (self.entries.count + 1) * 2 > self.slots.count {
            self.grow()
        }
        let offset = UInt32(self.arena.count)
        Self.appendPadded(key.bytes, to: &self.arena)
        let index = self.entries.count
        self.entries.append(
            ByteKeyEntry(key: ByteRange(offset: offset, length: UInt32(key.bytes.count)), prefix0: key.prefix0))
        self.values.append(value)
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
        self.slots[slot] = UInt32(truncatingIfNeeded: hash &>> 56) &<< 24 | UInt32(index + 1)
    }

    private mutating func grow() {
        let capacity = max(16, self.slots.count * 2)
        self.rebuildSlots(capacity: capacity)
    }

    private mutating func rebuildSlots(capacity: Int) {
        self.slots = [UInt32](repeating: 0, count: capacity)
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
        self.values.withUnsafeMutableBufferPointer { body(&$0[index]) }
    }

    /// Mutable access to one entry's value.
    public subscript(valueAt index: Int) -> Value {
        get { self.values[index] }
        _modify { yield &self.values[index] }
    }

    /// Every value set to `value` at once, in a new array: a snapshot that shares the old one keeps it unchanged
    /// (and nothing is copied to be overwritten).
    public mutating func resetValues(to value: Value) {
        self.values = [Value](repeating: value, count: self.values.count)
    }

    /// Where the key of the entry at `index` is in `arena`.
    public func keyRange(at index: Int) -> ByteRange {
        self.entries[index].key
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
        var keep: [Bool] = []
        keep.reserveCapacity(self.values.count)
        var removedAny = false
        for index in self.values.indices {
            let remove = shouldRemove(index, &self.values[index])
            keep.append(!remove)
            if remove { removedAny = true }
        }
        guard removedAny else { return }
        var entries: [ByteKeyEntry] = []
        var values: [Value] = []
        var arena: [UInt8] = []
        for index in self.entries.indices where keep[index] {
            let old = self.entries[index].key
            let offset = UInt32(arena.count)
            self.arena.withUnsafeBytes {
                Self.appendPadded(UnsafeRawBufferPointer(rebasing: $0[old.range]), to: &arena)
            }
            let prefix0 = self.entries[index].prefix0
            entries.append(ByteKeyEntry(key: ByteRange(offset: offset, length: old.length), prefix0: prefix0))
            values.append(self.values[index])
        }
        if entries.isEmpty {
            self.removeAll()
            return
        }
        self.arena = arena
        self.entries = entries
        self.values = values
        var capacity = 16
        while capacity < entries.count * 2 { capacity *= 2 }
        self.rebuildSlots(capacity: capacity)
    }

    /// Empties the table and keeps its capacity.
    public mutating func removeAll() {
        self.entries.removeAll(keepingCapacity: true)
        self.values.removeAll(keepingCapacity: true)
        self.arena.removeAll(keepingCapacity: true)
        for index in self.slots.indices { self.slots[index] = 0 }
    }
}

extension ByteKeyTable: Sendable where Value: Sendable {}
