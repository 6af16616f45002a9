/// The full state of a table, taken under its lock: what a checkpoint stores.
struct TableState: Sendable {
    var config: TableConfig
    var counters: RateLimiterCounters
    var rng: ReplayRandom
    var nextSequence: UInt64
    /// Items in insertion order.
    var records: [ItemRecord]
    var samplerOrder: [UInt64]
    var removerOrder: [UInt64]
}

extension ReplayTable {
    /// A consistent copy of the table's state (O(n log n); chunk data is shared, not copied).
    func state() -> TableState {
        sync.withLock {
            TableState(config: config, counters: limiter.counters, rng: rng, nextSequence: nextSequence,
                       records: items.values.sorted { $0.sequence < $1.sequence },
                       samplerOrder: sampler.orderedKeys(), removerOrder: remover.orderedKeys())
        }
    }

    /// A table restored from `state`: same items, priorities, times sampled, counters,
    /// selector order and generator, so it behaves exactly as the original would have.
    convenience init(restoring state: TableState) throws(ReplayError) {
        try self.init(config: state.config)
        let name = state.config.name
        guard state.records.count <= state.config.maxSize else {
            throw ReplayError(.checkpoint, "table '\(name)': checkpoint holds \(state.records.count) items, more than max size \(state.config.maxSize)")
        }
        for r in state.records {
            guard items[r.item.key] == nil else {
                throw ReplayError(.checkpoint, "table '\(name)': checkpoint holds item key \(r.item.key) twice")
            }
            try r.item.validate()
            items[r.item.key] = r
        }
        for (order, selector, role) in [(state.samplerOrder, sampler, "sampler"), (state.removerOrder, remover, "remover")] {
            guard order.count == items.count, Set(order).count == order.count else {
                throw ReplayError(.checkpoint, "table '\(name)': checkpoint \(role) order lists \(order.count) keys, expected the \(items.count) item keys once each")
            }
            for key in order {
                guard let r = items[key] else {
                    throw ReplayError(.checkpoint, "table '\(name)': checkpoint \(role) order names key \(key), which is not an item")
                }
                selector.insert(key: key, priority: r.item.priority)
            }
        }
        limiter = RateLimiter(config: state.config.rateLimiter, counters: state.counters)
        rng = state.rng
        nextSequence = state.nextSequence
    }
}
