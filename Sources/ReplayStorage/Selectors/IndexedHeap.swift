/// A binary heap of keys ordered by priority, with a key -> position map so that update
/// and delete of any key are O(log n). Ties are broken by insertion sequence (the
/// earlier-inserted key first; an update keeps the key's sequence), so the order is total
/// and deterministic.
struct IndexedHeap {
    struct Entry {
        var key: UInt64
        var priority: Double
        var sequence: UInt64
    }

    /// True: largest priority on top; false: smallest.
    let maxOnTop: Bool
    private(set) var entries: [Entry] = []
    private var position: [UInt64: Int] = [:]
    private var nextSequence: UInt64 = 0

    init(maxOnTop: Bool) { self.maxOnTop = maxOnTop }

    var count: Int { entries.count }
    var top: UInt64? { entries.first?.key }

    @inline(__always)
    private func before(_ a: Entry, _ b: Entry) -> Bool {
        if a.priority != b.priority { return maxOnTop ? a.priority > b.priority : a.priority < b.priority }
        return a.sequence < b.sequence
    }

    mutating func insert(key: UInt64, priority: Double) {
        precondition(position[key] == nil, "heap selector: key \(key) already present")
        entries.append(Entry(key: key, priority: priority, sequence: nextSequence))
        nextSequence += 1
        position[key] = entries.count - 1
        siftUp(entries.count - 1)
    }

    mutating func update(key: UInt64, priority: Double) {
        guard let i = position[key] else { preconditionFailure("heap selector: key \(key) not present") }
        entries[i].priority = priority
        siftUp(i)
        siftDown(position[key]!)
    }

    mutating func delete(key: UInt64) {
        guard let i = position.removeValue(forKey: key) else { preconditionFailure("heap selector: key \(key) not present") }
        let last = entries.removeLast()
        if i < entries.count {
            entries[i] = last
            position[last.key] = i
            siftUp(i)
            siftDown(position[last.key]!)
        }
    }

    mutating func removeAll() {
        entries.removeAll()
        position.removeAll()
        nextSequence = 0
    }

    /// Keys in insertion-sequence order (re-inserting them reproduces every tie-break).
    func keysBySequence() -> [UInt64] { entries.sorted { $0.sequence < $1.sequence }.map(\.key) }

    private mutating func swapAt(_ i: Int, _ j: Int) {
        entries.swapAt(i, j)
        position[entries[i].key] = i
        position[entries[j].key] = j
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let p = (i - 1) / 2
            guard before(entries[i], entries[p]) else { return }
            swapAt(i, p)
            i = p
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let n = entries.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < n && before(entries[l], entries[best]) { best = l }
            if r < n && before(entries[r], entries[best]) { best = r }
            if best == i { return }
            swapAt(i, best)
            i = best
        }
    }

    /// The first violated heap property, if any (for tests).
    func invariantViolation() -> String? {
        for i in 1..<max(entries.count, 1) where before(entries[i], entries[(i - 1) / 2]) {
            return "entry \(i) (key \(entries[i].key)) belongs above its parent"
        }
        for (i, e) in entries.enumerated() where position[e.key] != i { return "key \(e.key) at \(i) mapped elsewhere" }
        return position.count == entries.count ? nil : "\(position.count) keys mapped, \(entries.count) entries"
    }
}
