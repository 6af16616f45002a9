import Foundation
import Synchronization
import TensorCore

/// One mini-batch: inputs [B, C, H, W] Float32 and labels [B] Int64.
public struct Batch: Sendable {
    public let inputs: Tensor
    public let labels: Tensor
    /// Position of this batch within its epoch.
    public let index: Int
}

/// How a loader batches, shuffles and augments.
public struct LoaderOptions: Sendable {
    public var batchSize: Int
    public var shuffle: Bool
    public var dropLast: Bool
    public var seed: UInt64
    public var augmentations: [Augmentation]
    /// Batches prepared ahead on a background thread (0: load on the caller's thread).
    public var prefetch: Int

    public init(batchSize: Int = 64, shuffle: Bool = true, dropLast: Bool = false, seed: UInt64 = 0,
                augmentations: [Augmentation] = [], prefetch: Int = 2) {
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
        self.augmentations = augmentations
        self.prefetch = prefetch
    }
}

/// Produces mini-batches of a dataset, epoch by epoch.
///
/// Shuffling uses a generator seeded from (seed, epoch), so epoch e's order is the same
/// on every run and after a resume. Each batch's augmentation draws from its own
/// generator seeded from (seed, epoch, batch), so prefetching cannot change results.
public struct DataLoader<D: Dataset>: Sendable {
    public let dataset: D
    public let options: LoaderOptions

    public init(_ dataset: D, options: LoaderOptions) throws(DatasetError) {
        guard options.batchSize > 0 else { throw DatasetError(path: "loader", "batch size \(options.batchSize): expected a positive number") }
        guard options.prefetch >= 0 else { throw DatasetError(path: "loader", "prefetch \(options.prefetch): expected >= 0") }
        for a in options.augmentations { try a.validate(sampleShape: dataset.sampleShape) }
        self.dataset = dataset
        self.options = options
    }

    /// Batches per epoch.
    public var batchCount: Int {
        let n = dataset.count, b = options.batchSize
        return options.dropLast ? n / b : (n + b - 1) / b
    }

    /// The sample order of `epoch`.
    public func order(epoch: Int) -> [Int] {
        options.shuffle ? Generator(seed: mix(options.seed, UInt64(epoch), 0x5EED)).permutation(dataset.count) : Array(0..<dataset.count)
    }

    /// Builds batch `index` of `epoch` (deterministic; thread-safe).
    public func makeBatch(epoch: Int, index: Int, order: [Int]) -> Batch {
        let b = options.batchSize
        let lo = index * b, hi = Swift.min(lo + b, order.count)
        let shape = dataset.sampleShape
        let per = shape.reduce(1, *)
        var pixels = [Float](repeating: 0, count: (hi - lo) * per)
        var labels = [Int64](repeating: 0, count: hi - lo)
        let gen = Generator(seed: mix(options.seed, UInt64(epoch), UInt64(index)))
        var scratch = [Float](repeating: 0, count: per)
        pixels.withUnsafeMutableBufferPointer { all in
            scratch.withUnsafeMutableBufferPointer { sc in
                for (k, i) in order[lo..<hi].enumerated() {
                    let slot = UnsafeMutableBufferPointer(rebasing: all[(k * per)..<((k + 1) * per)])
                    labels[k] = Int64(dataset.sample(i, into: slot))
                    for a in options.augmentations { a.apply(slot, shape: shape, scratch: sc, generator: gen) }
                }
            }
        }
        let inputs = Memory.withTag(.activations) { try! Tensor(pixels, shape: [hi - lo] + shape) }
        return Batch(inputs: inputs, labels: try! Tensor(labels, shape: [hi - lo]), index: index)
    }

    /// The batches of `epoch`, prepared `options.prefetch` ahead on a background thread.
    public func epoch(_ epoch: Int, startingAt first: Int = 0) -> EpochIterator<D> {
        EpochIterator(loader: self, epoch: epoch, first: first)
    }
}

/// Iterates one epoch's batches; with prefetch > 0 a producer thread fills a bounded queue.
///
/// The producer holds only the shared `PrefetchQueue`, never the iterator, so an iterator
/// dropped mid-epoch is freed at once; its deinit cancels the queue and the thread exits.
public final class EpochIterator<D: Dataset>: IteratorProtocol, Sequence {
    let queue: PrefetchQueue<D>
    var next_: Int
    let hasThread: Bool

    init(loader: DataLoader<D>, epoch: Int, first: Int) {
        queue = PrefetchQueue(loader: loader, epoch: epoch, first: first)
        next_ = first
        hasThread = loader.options.prefetch > 0 && first < queue.count
        if hasThread {
            let q = queue
            let t = Thread { q.produce() }
            t.name = "loom.prefetch"
            t.start()
        }
    }

    public func next() -> Batch? {
        guard next_ < queue.count else { return nil }
        let i = next_
        next_ += 1
        if !hasThread { return queue.loader.makeBatch(epoch: queue.epoch, index: i, order: queue.order) }
        return queue.take(i)
    }

    deinit { queue.cancel() }
}

/// The bounded hand-off between the prefetch thread and the iterator.
///
/// `@unchecked Sendable` by design: the ready map and counters are guarded by `state`; the
/// semaphores are thread-safe; everything else is immutable.
final class PrefetchQueue<D: Dataset>: @unchecked Sendable {
    let loader: DataLoader<D>
    let epoch: Int
    let order: [Int]
    let count: Int
    struct Queue {
        var ready: [Int: Batch] = [:]
        var produced: Int
        var cancelled = false
    }
    let state: Mutex<Queue>
    let slots: DispatchSemaphore
    let available = DispatchSemaphore(value: 0)

    init(loader: DataLoader<D>, epoch: Int, first: Int) {
        self.loader = loader
        self.epoch = epoch
        self.order = loader.order(epoch: epoch)
        self.count = loader.batchCount
        self.state = Mutex(Queue(produced: first))
        // Created at 0 and signalled up to the capacity: libdispatch traps when a semaphore is
        // freed with a value below the one it was created with, which an abandoned epoch
        // (producer waiting or slots taken) would otherwise do.
        self.slots = DispatchSemaphore(value: 0)
        for _ in 0..<Swift.max(loader.options.prefetch, 1) { slots.signal() }
    }

    func produce() {
        while true {
            slots.wait()
            let (i, stop) = state.withLock { s in (s.produced, s.cancelled || s.produced >= count) }
            if stop { available.signal(); return }
            let batch = loader.makeBatch(epoch: epoch, index: i, order: order)
            state.withLock { s in
                s.ready[i] = batch
                s.produced += 1
            }
            available.signal()
        }
    }

    func take(_ i: Int) -> Batch {
        while true {
            available.wait()
            if let b = state.withLock({ $0.ready.removeValue(forKey: i) }) {
                slots.signal()
                return b
            }
        }
    }

    func cancel() {
        state.withLock { $0.cancelled = true }
        slots.signal()
    }
}

/// Mixes three words into a seed (SplitMix64-style finaliser).
func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
    var z = a &+ 0x9E37_79B9_7F4A_7C15 &* (b &+ 1) &+ 0xD1B5_4A32_D192_ED03 &* (c &+ 1)
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
