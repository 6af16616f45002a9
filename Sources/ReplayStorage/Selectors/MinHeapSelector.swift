/// Selects the item with the smallest priority; ties go to the earliest inserted item.
///
/// Complexity: insert, update and delete O(log n) (an indexed binary heap), sample O(1).
/// Sample probability is 1. Not thread-safe: see `ItemSelector`.
public final class MinHeapSelector: ItemSelector {
    var heap = IndexedHeap(maxOnTop: false)

    /// An empty min-heap selector.
    public init() {}

    public var count: Int { heap.count }
    public func insert(key: UInt64, priority: Double) { heap.insert(key: key, priority: priority) }
    public func update(key: UInt64, priority: Double) { heap.update(key: key, priority: priority) }
    public func delete(key: UInt64) { heap.delete(key: key) }
    public func sample(_ rng: inout ReplayRandom) -> SelectedKey {
        guard let k = heap.top else { preconditionFailure("MinHeapSelector.sample: no items") }
        return SelectedKey(key: k, probability: 1)
    }
    public func clear() { heap.removeAll() }
    public func orderedKeys() -> [UInt64] { heap.keysBySequence() }
}
