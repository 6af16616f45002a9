/// A finite, indexable collection of labelled samples.
///
/// Concurrency contract: `sample(_:into:)` is called from the loader's prefetch thread,
/// possibly while the training thread runs; implementations must be immutable after
/// construction (hence `Sendable`).
public protocol Dataset: Sendable {
    /// Number of samples.
    var count: Int { get }
    /// Shape of one sample, e.g. [1, 28, 28] (channels, height, width).
    var sampleShape: [Int] { get }
    /// Number of classes (labels are 0..<classCount).
    var classCount: Int { get }
    /// Writes sample `index` as Float32 in [0, 1] into `into` (sampleShape's element count) and returns its label.
    func sample(_ index: Int, into: UnsafeMutableBufferPointer<Float>) -> Int
}

/// The first `count` samples (or an index range) of another dataset: for quick runs and tests.
public struct Subset<Base: Dataset>: Dataset {
    public let base: Base
    public let indices: [Int]

    public init(_ base: Base, indices: [Int]) {
        for i in indices { precondition(i >= 0 && i < base.count, "Subset: index \(i) out of range 0..<\(base.count)") }
        self.base = base
        self.indices = indices
    }

    public init(_ base: Base, first n: Int) {
        self.init(base, indices: Array(0..<Swift.min(n, base.count)))
    }

    public var count: Int { indices.count }
    public var sampleShape: [Int] { base.sampleShape }
    public var classCount: Int { base.classCount }
    public func sample(_ index: Int, into: UnsafeMutableBufferPointer<Float>) -> Int { base.sample(indices[index], into: into) }
}
