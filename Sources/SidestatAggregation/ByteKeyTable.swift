//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

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
        public var hash: UInt32
        public var value: Value
    }

    public private(set) var arena: [UInt8] = []
    public private(set) var entries: [Entry] = []
    /// Open addressing with linear probing. A slot is 0 when empty, otherwise the key's 32-bit hash in the high
    /// half and the entry index + 1 in the low half, so that most mismatches are rejected without touching the
    /// entry or the key bytes.
    private var slots: [UInt64] = []
    private var mask = 0

    public init() {}

    public var count: Int { self.entries.count }
    public var isEmpty: Bool { self.entries.isEmpty }

    /// Up to 8 bytes at `base + offset`, little-endian, zero-filled past `count`. Reads a whole word when it stays
    /// inside one memory page (so it cannot fault) and masks what lies beyond.
    @inline(__always)
    static func partialWord(_ base: UnsafeRawPointer, _ offset: Int, _ count: Int) -> UInt64 {
        if count <= 0 { return 0 }
        let address = base + offset
        if UInt(bitPattern: address) & 4095 <= 4088 {
            let word = address.loadUnaligned(as: UInt64.self)
            return count >= 8 ? word : word & ((1 &<< UInt64(count &* 8)) &- 1)
        }
        var word: UInt64 = 0
        for index in 0..<min(count, 8) {
            word |= UInt64(address.load(fromByteOffset: index, as: UInt8.self)) &<< UInt64(index &* 8)
        }
        return word
    }

    /// Hashes a byte string: 64-bit multiply-mix over 8-byte words, then a short avalanche.
    @inline(__always)
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        let count = key.count
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        guard let base = key.baseAddress else { return h }
        var index = 0
        while index &+ 8 <= count {
            h = (h ^ base.loadUnaligned(fromByteOffset: index, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h = (h &<< 31) | (h &>> 33)
            index &+= 8
        }
        if index < count {
            h = (h ^ Self.partialWord(base, index, count &- index)) &* 0x94D0_49BB_1331_11EB
        }
        h ^= h &>> 32
        h = h &* 0xFF51_AFD7_ED55_8CCD
        h ^= h &>> 29
        return h
    }

    /// The index of `key`'s entry, if present.
    public func find(_ key: UnsafeRawBufferPointer) -> Int? {
        self.find(key, hash: Self.hash(key))
    }

    @inline(__always)
    func find(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Int? {
        guard !self.slots.isEmpty else { return nil }
        let tag = hash &<< 32
        var slot = Int(truncatingIfNeeded: hash) & self.mask
        return self.slots.withUnsafeBufferPointer { slots in
            self.entries.withUnsafeBufferPointer { entries in
                self.arena.withUnsafeBytes { arena in
                    while true {
                        let stored = slots[slot]
                        if stored == 0 { return nil }
                        if stored & 0xFFFF_FFFF_0000_0000 == tag {
                            let index = Int(truncatingIfNeeded: stored & 0xFFFF_FFFF) &- 1
                            if Int(entries[index].key.length) == key.count,
                                Self.equal(arena, entries[index].key, key)
                            {
                                return index
                            }
                        }
                        slot = (slot &+ 1) & self.mask
                    }
                }
            }
        }
    }

    @inline(__always)
    static func equal(_ arena: UnsafeRawBufferPointer, _ range: ByteRange, _ key: UnsafeRawBufferPointer) -> Bool {
        let count = key.count
        if count == 0 { return true }
        let stored = arena.baseAddress! + Int(range.offset)
        let probe = key.baseAddress!
        var index = 0
        while index &+ 8 <= count {
            if stored.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                != probe.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            {
                return false
            }
            index &+= 8
        }
        return index == count
            || Self.partialWord(stored, index, count &- index) == Self.partialWord(probe, index, count &- index)
    }

    /// The index of `key`'s entry, inserting one made by `makeValue` when the key is new.
    public mutating func findOrInsert(_ key: UnsafeRawBufferPointer, _ makeValue: () -> Value) -> Int {
        let hash = Self.hash(key)
        if let index = self.find(key, hash: hash) { return index }
        return self.insertNew(key, hash: hash, value: makeValue())
    }

    mutating func insertNew(_ key: UnsafeRawBufferPointer, hash: UInt64, value: Value) -> Int {
        if (self.entries.count + 1) * 2 > self.slots.count {
            self.grow()
        }
        let offset = UInt32(self.arena.count)
        self.arena.append(contentsOf: key)
        let index = self.entries.count
        self.entries.append(
            Entry(key: ByteRange(offset: offset, length: UInt32(key.count)), hash: UInt32(truncatingIfNeeded: hash),
                value: value))
        self.place(index: index, hash: hash)
        return index
    }

    private mutating func place(index: Int, hash: UInt64) {
        var slot = Int(truncatingIfNeeded: hash) & self.mask
        while self.slots[slot] != 0 { slot = (slot + 1) & self.mask }
        self.slots[slot] = (hash &<< 32) | UInt64(index + 1)
    }

    private mutating func grow() {
        let capacity = max(16, self.slots.count * 2)
        self.rebuildSlots(capacity: capacity)
    }

    private mutating func rebuildSlots(capacity: Int) {
        self.slots = [UInt64](repeating: 0, count: capacity)
        self.mask = capacity - 1
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
        let hash = Self.hash(key)
        let index = self.find(key, hash: hash) ?? self.insertNew(key, hash: hash, value: initial())
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
        arena.reserveCapacity(kept.reduce(0) { $0 + Int($1.key.length) })
        for index in kept.indices {
            let old = kept[index].key
            let offset = UInt32(arena.count)
            self.arena.withUnsafeBytes { arena.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[old.range])) }
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
