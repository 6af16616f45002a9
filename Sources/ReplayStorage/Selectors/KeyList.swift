/// A doubly linked list of keys in insertion order with O(1) append, remove-by-key,
/// first and last; nodes live in arrays (a slab with a free list), so no per-node objects.
struct KeyList {
    private var keys: [UInt64] = []
    private var prev: [Int] = []
    private var next: [Int] = []
    private var freeSlots: [Int] = []
    private var slotOf: [UInt64: Int] = [:]
    private var head = -1
    private var tail = -1

    var count: Int { slotOf.count }
    var first: UInt64? { head >= 0 ? keys[head] : nil }
    var last: UInt64? { tail >= 0 ? keys[tail] : nil }

    /// Appends `key` at the end. O(1) amortised.
    mutating func append(_ key: UInt64) {
        precondition(slotOf[key] == nil, "KeyList.append: key \(key) already present")
        let s: Int
        if let f = freeSlots.popLast() {
            s = f
            keys[s] = key; prev[s] = tail; next[s] = -1
        } else {
            s = keys.count
            keys.append(key); prev.append(tail); next.append(-1)
        }
        if tail >= 0 { next[tail] = s } else { head = s }
        tail = s
        slotOf[key] = s
    }

    /// Removes `key`. O(1).
    mutating func remove(_ key: UInt64) {
        guard let s = slotOf.removeValue(forKey: key) else { preconditionFailure("KeyList.remove: key \(key) not present") }
        let p = prev[s], n = next[s]
        if p >= 0 { next[p] = n } else { head = n }
        if n >= 0 { prev[n] = p } else { tail = p }
        freeSlots.append(s)
    }

    mutating func removeAll() { self = KeyList() }

    /// Keys from first to last. O(n).
    func ordered() -> [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(count)
        var s = head
        while s >= 0 { out.append(keys[s]); s = next[s] }
        return out
    }
}
