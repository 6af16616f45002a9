import XCTest
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel

/// N ranks with per-rank batch B/N against one process with batch B (the oracle).
///
/// Tolerances: the two computations are equal in exact arithmetic (mean of N partial
/// means of B/N samples = mean of B samples); they differ in the order of Float sums
/// (one GEMM/reduction over B versus N reductions over B/N, then the allreduce's
/// `((g0 + g1) + g2) / N`). With weights and gradients of order 1 and lr 0.1, three steps
/// stay within 5e-7 in Float32 (measured <= 3e-8, 1-2 ulps of the weights) and 1e-14 in
/// Float64 (measured <= 6e-17).
final class DistributedDataParallelTests: XCTestCase {
    let steps = 3
    let batch = 6  // divisible by 1, 2 and 3

    func check(_ build: @escaping ModelBuilder, sample: [Int], dtype: DType, tolerance: Double,
               options: DDPOptions = DDPOptions(), sizes: [Int] = [1, 2, 3], file: StaticString = #filePath, line: UInt = #line) throws {
        let data = Batches(steps: steps, batch: batch, sample: sample, dtype: dtype, seed: 7)
        let oracle = trainSingle(build, dtype: dtype, data: data, steps: steps)
        // The run must move the weights, or the comparison proves nothing.
        let initial = weights(convert(build(42), to: dtype))
        XCTAssertGreaterThan(maxAbsDiff(oracle, initial), 1e-3, file: file, line: line)
        for n in sizes {
            let ranks = try trainDDP(build, size: n, dtype: dtype, data: data, steps: steps, options: options)
            for r in 0..<n {
                // Replicas are bitwise identical.
                XCTAssertEqual(ranks[r], ranks[0], "rank \(r) differs from rank 0 (world \(n))", file: file, line: line)
            }
            let d = maxAbsDiff(ranks[0], oracle)
            print("\(dtype), world \(n): max |DDP - single| = \(d)")
            XCTAssertLessThanOrEqual(d, tolerance, "world \(n): max |DDP - single| = \(d)", file: file, line: line)
            if n == 1 { XCTAssertEqual(d, 0, "world 1 must reproduce the single process bit for bit", file: file, line: line) }
        }
    }

    func testMLPFloat32() throws {
        try check(mlpBuilder, sample: [5], dtype: .float32, tolerance: 5e-7)
    }

    func testMLPFloat64() throws {
        try check(mlpBuilder, sample: [5], dtype: .float64, tolerance: 1e-14)
    }

    func testCNNFloat32() throws {
        try check(cnnBuilder, sample: [2, 4, 4], dtype: .float32, tolerance: 5e-7)
    }

    func testCNNFloat64() throws {
        try check(cnnBuilder, sample: [2, 4, 4], dtype: .float64, tolerance: 1e-14)
    }

    /// Many tiny buckets (fusion boundaries everywhere), with and without overlap, and the ring.
    func testSmallBucketsOverlapOffAndRing() throws {
        try check(mlpBuilder, sample: [5], dtype: .float32, tolerance: 5e-7,
                  options: DDPOptions(bucketCapBytes: 64, firstBucketCapBytes: 16, overlap: false))
        for algorithm in [AllReduceAlgorithm.ring, .halvingDoubling, .tree] {
            try check(cnnBuilder, sample: [2, 4, 4], dtype: .float32, tolerance: 5e-7,
                      options: DDPOptions(bucketCapBytes: 100, firstBucketCapBytes: 8, collective: CollectiveOptions(algorithm: algorithm, chunkBytes: 64)))
        }
    }

    /// fp16 on the wire (ring, accumulation in float32): the deviation from the oracle is
    /// measured and bounded. Each gradient element is rounded to 11 significant bits per
    /// hop (relative 2^-11 ≈ 4.9e-4); with gradients below ~1 and lr 0.1 over 3 steps the
    /// weights move by < 3 · 0.1 · 1 · 3 · 4.9e-4 ≈ 4.4e-4; we assert 5e-4.
    func testWireCompressionDeviationIsBounded() throws {
        let data = Batches(steps: steps, batch: batch, sample: [5], dtype: .float32, seed: 7)
        let oracle = trainSingle(mlpBuilder, dtype: .float32, data: data, steps: steps)
        // bf16 keeps 8 significant bits (2^-8 ≈ 3.9e-3 relative): the same argument gives 3.5e-3; we assert 4e-3.
        for (wire, bound) in [(WireCompression.float16, 5e-4), (.bfloat16, 4e-3)] {
            for n in [2, 3] {
                let ranks = try trainDDP(mlpBuilder, size: n, dtype: .float32, data: data, steps: steps,
                                         options: DDPOptions(collective: CollectiveOptions(algorithm: .ring, compression: wire)))
                for r in 0..<n { XCTAssertEqual(ranks[r], ranks[0], "rank \(r) (world \(n))") }
                let d = maxAbsDiff(ranks[0], oracle)
                print("\(wire.rawValue) wire, world \(n): max |DDP - single| = \(d)")
                XCTAssertLessThanOrEqual(d, bound, "\(wire.rawValue), world \(n)")
                XCTAssertGreaterThan(d, 1e-7, "\(wire.rawValue), world \(n): compression must be in effect")
            }
        }
    }

    /// Chunked top-k with error feedback. With every chunk sent (fraction 1) the exchange
    /// is the dense average in rank order, so the weights equal dense DDP bit for bit.
    /// With a quarter of the chunks (of 4 elements) the deviation from the oracle is
    /// measured; after 3 steps at lr 0.1 it must stay below the total movement of the
    /// weights (what is not sent is delayed, not lost) and well above rounding.
    func testSparseTopKChunks() throws {
        let data = Batches(steps: steps, batch: batch, sample: [5], dtype: .float32, seed: 7)
        let oracle = trainSingle(mlpBuilder, dtype: .float32, data: data, steps: steps)
        let initial = weights(mlpBuilder(42))
        let movement = maxAbsDiff(oracle, initial)
        for n in [2, 3] {
            let dense = try trainDDP(mlpBuilder, size: n, dtype: .float32, data: data, steps: steps,
                                     options: DDPOptions(bucketCapBytes: 64, firstBucketCapBytes: 16))
            let full = try trainDDP(mlpBuilder, size: n, dtype: .float32, data: data, steps: steps,
                                    options: DDPOptions(bucketCapBytes: 64, firstBucketCapBytes: 16, sparse: SparseGradientOptions(chunkSize: 4, fraction: 1)))
            XCTAssertEqual(full[0], dense[0], "world \(n): fraction 1 must equal the dense allreduce")
            let quarter = try trainDDP(mlpBuilder, size: n, dtype: .float32, data: data, steps: steps,
                                       options: DDPOptions(sparse: SparseGradientOptions(chunkSize: 4, fraction: 0.25)))
            for r in 0..<n { XCTAssertEqual(quarter[r], quarter[0], "rank \(r)") }
            let d = maxAbsDiff(quarter[0], oracle)
            print("sparse top-k 1/4 of 4-element chunks, world \(n): max |DDP - single| = \(d), weights moved \(movement)")
            XCTAssertGreaterThan(d, 1e-5, "world \(n): sparsification must change the result")
            XCTAssertLessThan(d, movement, "world \(n)")
        }
        XCTAssertEqual(SparseGradientOptions(chunkSize: 4, fraction: 0.25).topChunks(count: 160), 10)
        XCTAssertEqual(SparseGradientOptions(chunkSize: 4, fraction: 0.01).topChunks(count: 3), 1)
    }

    /// A global batch of 7 over 2 and 3 ranks (uneven): with `BatchShard.lossScale` the
    /// result equals the single process (Float64, 1e-14).
    func testUnevenBatchWithLossScale() throws {
        XCTAssertEqual((0..<3).map { BatchShard.range(rank: $0, batch: 7, size: 3) }, [0..<3, 3..<5, 5..<7])
        XCTAssertEqual(BatchShard.lossScale(rank: 0, batch: 7, size: 3), 9.0 / 7.0)
        XCTAssertEqual(BatchShard.lossScale(rank: 1, batch: 6, size: 3), 1)
        let data = Batches(steps: steps, batch: 7, sample: [5], dtype: .float64, seed: 17)
        let oracle = trainSingle(mlpBuilder, dtype: .float64, data: data, steps: steps)
        for n in [2, 3] {
            let ranks = try InProcessWorld.run(size: n) { group in
                let model = convert(mlpBuilder(group.rank == 0 ? 42 : 3), to: .float64)
                let ddp = try DistributedDataParallel(model, group: group)
                var opt = Optimizer(try sgd(lr: 0.1), params: model.parameters.map(\.value))
                for t in 0..<3 {
                    let r = BatchShard.range(rank: group.rank, batch: 7, size: n)
                    let x = data.inputs[t].narrowed(dim: 0, start: r.lowerBound, length: r.count).contiguous()
                    let y = data.labels[t].narrowed(dim: 0, start: r.lowerBound, length: r.count).contiguous()
                    (Loss.crossEntropy(logits: ddp(x), targets: y) * BatchShard.lossScale(rank: group.rank, batch: 7, size: n)).backward()
                    try ddp.finishGradientSync()
                    optimizerStep(&opt, model)
                    model.zeroGrad()
                }
                return weights(model)
            }
            XCTAssertLessThanOrEqual(maxAbsDiff(ranks[0], oracle), 1e-14, "world \(n)")
        }
    }

    /// Overlap is recommended only when every rank's communication thread has a core.
    func testOverlapNeedsACorePerCommunicationThread() {
        XCTAssertFalse(DDPOptions.overlapHelps(localRanks: 2, cores: 2, computeThreadsPerRank: 1))
        XCTAssertTrue(DDPOptions.overlapHelps(localRanks: 2, cores: 4, computeThreadsPerRank: 1))
        XCTAssertTrue(DDPOptions.overlapHelps(localRanks: 1, cores: 2, computeThreadsPerRank: 1))
        XCTAssertFalse(DDPOptions.overlapHelps(localRanks: 2, cores: 4, computeThreadsPerRank: 2))
        XCTAssertFalse(DDPOptions.overlapHelps(localRanks: 3, cores: 2, computeThreadsPerRank: 0), "0 threads counts as one")
    }

    /// Two micro-steps under noSync + synced equal one step on the concatenated batch.
    func testNoSyncAccumulationEqualsOneBigStep() throws {
        let micro = Batches(steps: 2, batch: batch, sample: [5], dtype: .float64, seed: 11)
        let big = Batches(inputs: [Tensor.cat(micro.inputs, dim: 0)], labels: [Tensor.cat(micro.labels, dim: 0)])
        let oracle = trainSingle(mlpBuilder, dtype: .float64, data: big, steps: 1)
        for n in [1, 2, 3] {
            let ranks = try InProcessWorld.run(size: n) { group in
                let model = convert(mlpBuilder(group.rank == 0 ? 42 : 7), to: .float64)
                let ddp = try DistributedDataParallel(model, group: group)
                var opt = Optimizer(try sgd(lr: 0.1), params: model.parameters.map(\.value))
                func microStep(_ m: Int) {
                    let (x, y) = micro.local(m, rank: group.rank, size: n)
                    (Loss.crossEntropy(logits: ddp(x), targets: y) * 0.5).backward()
                }
                ddp.noSync { microStep(0) }
                microStep(1)
                try ddp.finishGradientSync()
                optimizerStep(&opt, model)
                return weights(model)
            }
            XCTAssertLessThanOrEqual(maxAbsDiff(ranks[0], oracle), 1e-13, "world \(n)")
            XCTAssertEqual(ranks.last!, ranks[0])
        }
    }

    /// Every rank starts from rank 0's parameters and buffers.
    func testBroadcastFromRankZero() throws {
        let results = try InProcessWorld.run(size: 3) { group in
            let g = Generator(seed: 100 + UInt64(group.rank))
            let bn = BatchNorm1d(4)
            bn.runningMean!.value = Tensor.full([4], Double(group.rank))
            let model = Sequential([Linear(3, 4, generator: g), bn])
            _ = try DistributedDataParallel(model, group: group)
            return weights(model) + model.namedBuffers().map { $0.1.value.doubles() }
        }
        XCTAssertEqual(results[1], results[0])
        XCTAssertEqual(results[2], results[0])
        XCTAssertEqual(results[2].last!, [0])  // num_batches_tracked
        XCTAssertEqual(results[2][4], [0, 0, 0, 0])  // running_mean from rank 0
        let rank0Linear = weights(Sequential([Linear(3, 4, generator: Generator(seed: 100)), BatchNorm1d(4)]))
        XCTAssertEqual(Array(results[1].prefix(4)), rank0Linear)
    }

    /// With overlap, the buckets are all-reduced during backward: by the time backward
    /// returns every bucket has been issued; without overlap none has.
    func testOverlapLaunchesDuringBackward() throws {
        for overlap in [true, false] {
            let counts = try InProcessWorld.run(size: 2) { group in
                let spy = SpyGroup(group)
                let model = mlpBuilder(42)
                let ddp = try DistributedDataParallel(model, group: spy, options: DDPOptions(bucketCapBytes: 64, firstBucketCapBytes: 16, overlap: overlap))
                let before = spy.allReduces
                let x = Tensor.randn([2, 5], generator: Generator(seed: 3))
                Loss.crossEntropy(logits: ddp(x), targets: Tensor([Int64(0), 2])).backward()
                let duringBackward = spy.allReduces - before
                try ddp.finishGradientSync()
                return [duringBackward, spy.allReduces - before, ddp.assignment.buckets.count]
            }
            let buckets = counts[0][2]
            XCTAssertEqual(buckets, 4)  // 12 B (bias 3), 96 B (3x8), 32 B (bias 8), 160 B (8x5) with caps 16 / 64
            XCTAssertEqual(counts[0][0], overlap ? buckets : 0, "overlap \(overlap)")
            XCTAssertEqual(counts[0][1], buckets, "overlap \(overlap)")
        }
    }

    func testUnusedParameterErrorNamesParameters() throws {
        let messages = try InProcessWorld.run(size: 2) { group -> String in
            let model = TwoBranches(seed: 5)
            let ddp = try DistributedDataParallel(model, group: group)
            Loss.mseLoss(ddp(Tensor.ones([2, 3])), Tensor.zeros([2, 2])).backward()
            do { try ddp.finishGradientSync(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(messages[1], "rank 1, step 0: DDP: 2 of 4 parameters received no gradient in this backward: 'extra.weight', 'extra.bias'; expected every parameter to take part in the loss (pass findUnusedParameters: true to allow this)")
        XCTAssertTrue(messages[0].hasPrefix("rank 0, step 0: DDP: 2 of 4 parameters"))
    }

    /// findUnusedParameters: a parameter unused on every rank keeps `.grad == nil`; one
    /// used on rank 0 only gets rank 0's gradient / N.
    func testFindUnusedParameters() throws {
        let n = 3
        let grads = try InProcessWorld.run(size: n) { group -> [[Double]?] in
            let model = TwoBranches(seed: 5)
            let ddp = try DistributedDataParallel(model, group: group, options: DDPOptions(findUnusedParameters: true))
            var out: [[Double]?] = []
            // Step 0: extra unused everywhere.
            Loss.mseLoss(ddp(Tensor.ones([2, 3])), Tensor.zeros([2, 2])).backward()
            try ddp.finishGradientSync()
            out.append(model.extra.weight.grad?.doubles())
            model.zeroGrad()
            // Step 1: extra used on rank 0 only (local gradients recorded for the oracle).
            model.useExtra = group.rank == 0
            Loss.mseLoss(ddp(Tensor.ones([2, 3])), Tensor.zeros([2, 2])).backward()
            let local = model.extra.weight.grad?.doubles()
            try ddp.finishGradientSync()
            out.append(local)
            out.append(model.extra.weight.grad?.doubles())
            return out
        }
        for r in 0..<n { XCTAssertNil(grads[r][0], "rank \(r) step 0") }
        let local0 = try XCTUnwrap(grads[0][1])
        XCTAssertNil(grads[1][1])
        XCTAssertTrue(local0.contains { $0 != 0 })
        for r in 0..<n {
            let g = try XCTUnwrap(grads[r][2], "rank \(r)")
            for (a, b) in zip(g, local0) { XCTAssertEqual(a, b / Double(n), accuracy: 1e-7) }
        }
    }

    func testMixedDTypesAndLayoutMismatchAreErrors() throws {
        let messages = try InProcessWorld.run(size: 2) { group -> String in
            // Rank 1 has one Linear more.
            let layers: [Module] = group.rank == 0 ? [Linear(2, 2)] : [Linear(2, 2), Linear(2, 2)]
            do { _ = try DistributedDataParallel(Sequential(layers), group: group); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(messages[0], "rank 0: DDP: this rank has 2 parameters (24 bytes); ranks range over 2...4 parameters and 24...48 bytes; expected the same model on every rank")
        let m = try InProcessWorld.run(size: 1) { group -> String in
            let mixed = Sequential([Linear(2, 2), Linear(2, 2)])
            mixed.parameters[3].value = mixed.parameters[3].value.to(.float64).requiringGrad()
            do { _ = try DistributedDataParallel(mixed, group: group); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(m[0], "rank 0: DDP: parameter '1.bias' has dtype float64; expected float32 like '0.weight' (all parameters must share one dtype)")
    }
}

/// A model with a branch that is used only when `useExtra` is set.
final class TwoBranches: Module {
    let main: Linear
    let extra: Linear
    var useExtra = false
    init(seed: UInt64) {
        let g = Generator(seed: seed)
        main = Linear(3, 2, generator: g)
        extra = Linear(3, 2, generator: g)
    }
    override func forward(_ x: Tensor) -> Tensor { useExtra ? main(x) + extra(x) : main(x) }
}

/// Forwards to a real group and counts issued allreduces (the test's window into timing).
/// `@unchecked Sendable`: the counter is guarded by `lock`; the rest is immutable.
final class SpyGroup: ProcessGroup, @unchecked Sendable {
    let inner: any ProcessGroup
    private let lock = NSLock()
    private var count = 0
    init(_ inner: any ProcessGroup) { self.inner = inner }
    var allReduces: Int { lock.lock(); defer { lock.unlock() }; return count }
    var rank: Int { inner.rank }
    var size: Int { inner.size }
    var timeout: Double { inner.timeout }
    var step: Int { get { inner.step } set { inner.step = newValue } }
    var backendName: String { "spy" }
    func allReduceAsync(_ buffer: CollectiveBuffer, op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        lock.lock(); count += 1; lock.unlock()
        return inner.allReduceAsync(buffer, op: op, options: options)
    }
    func reduceScatterAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], op: ReduceOp, options: CollectiveOptions) -> CollectiveWork {
        inner.reduceScatterAsync(send: send, recv: recv, counts: counts, op: op, options: options)
    }
    func allGatherAsync(send: CollectiveBuffer, recv: CollectiveBuffer, counts: [Int], options: CollectiveOptions) -> CollectiveWork {
        inner.allGatherAsync(send: send, recv: recv, counts: counts, options: options)
    }
    func broadcastAsync(_ buffer: CollectiveBuffer, root: Int) -> CollectiveWork { inner.broadcastAsync(buffer, root: root) }
    func sendAsync(_ buffer: CollectiveBuffer, to peer: Int, tag: Int) -> CollectiveWork { inner.sendAsync(buffer, to: peer, tag: tag) }
    func recvAsync(_ buffer: CollectiveBuffer, from peer: Int, tag: Int) -> CollectiveWork { inner.recvAsync(buffer, from: peer, tag: tag) }
    func sendRecvAsync(send: CollectiveBuffer, to dst: Int, recv: CollectiveBuffer, from src: Int, tag: Int) -> CollectiveWork {
        inner.sendRecvAsync(send: send, to: dst, recv: recv, from: src, tag: tag)
    }
    func barrierAsync() -> CollectiveWork { inner.barrierAsync() }
}
