import XCTest
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel

/// Stages 1 and 2 against DDP + the same (unsharded) optimizer.
///
/// The oracle is DDP (allreduce, average) followed by `Optimizer.step` on every full
/// parameter. The sharded run reduce-scatters (same rank-order sums in the in-process
/// native backend, same division by N), applies the same elementwise rule to each rank's
/// slice and all-gathers: the same arithmetic on the same numbers, so the weights must be
/// bitwise equal. Models have 75 (MLP) and 127 (CNN) parameters: uneven shards for 2
/// and 3 ranks; stage 2 uses 64-byte buckets so buckets straddle shard boundaries.
final class ShardedOptimizerTests: XCTestCase {
    let steps = 3, batch = 6

    typealias MakeTransformation = @Sendable () throws -> any GradientTransformation

    func ddpOracle(_ build: @escaping ModelBuilder, sample: [Int], size: Int, data: Batches, transformation: @escaping MakeTransformation) throws -> [[Double]] {
        let steps = self.steps
        return try InProcessWorld.run(size: size) { group in
            let model = build(group.rank == 0 ? 42 : 99)
            let ddp = try DistributedDataParallel(model, group: group)
            var opt = Optimizer(try transformation(), params: model.parameters.map(\.value))
            for t in 0..<steps {
                let (x, y) = data.local(t, rank: group.rank, size: size)
                Loss.crossEntropy(logits: ddp(x), targets: y).backward()
                try ddp.finishGradientSync()
                optimizerStep(&opt, model)
                model.zeroGrad()
            }
            return weights(model)
        }[0]
    }

    func sharded(_ build: @escaping ModelBuilder, size: Int, stage: ShardingStage, data: Batches, transformation: @escaping MakeTransformation) throws -> [[[Double]]] {
        let steps = self.steps
        return try InProcessWorld.run(size: size) { group in
            let model = build(group.rank == 0 ? 42 : 99)
            let opt = try ShardedOptimizer(model, group: group, transformation: try transformation(), stage: stage, bucketCapBytes: 64)
            for t in 0..<steps {
                let (x, y) = data.local(t, rank: group.rank, size: size)
                Loss.crossEntropy(logits: model(x), targets: y).backward()
                try opt.step()
                model.zeroGrad()
            }
            precondition(opt.stepCount == steps, "stepCount \(opt.stepCount)")
            return weights(model)
        }
    }

    func check(_ build: @escaping ModelBuilder, sample: [Int], transformation: @escaping MakeTransformation, name: String) throws {
        let data = Batches(steps: steps, batch: batch, sample: sample, dtype: .float32, seed: 3)
        let initial = weights(build(42))
        for size in [1, 2, 3] {
            let oracle = try ddpOracle(build, sample: sample, size: size, data: data, transformation: transformation)
            XCTAssertGreaterThan(maxAbsDiff(oracle, initial), 1e-3, "\(name): the run must move the weights")
            for stage in ShardingStage.allCases {
                let ranks = try sharded(build, size: size, stage: stage, data: data, transformation: transformation)
                for r in 0..<size {
                    XCTAssertEqual(ranks[r], oracle, "\(name), world \(size), \(stage), rank \(r): max diff \(maxAbsDiff(ranks[r], oracle))")
                }
            }
        }
    }

    func testSGDMomentumMLP() throws {
        try check(mlpBuilder, sample: [5], transformation: { try sgd(lr: 0.1, momentum: 0.9, weightDecay: 1e-3) }, name: "sgd+momentum mlp")
    }

    func testAdamCNN() throws {
        try check(cnnBuilder, sample: [2, 4, 4], transformation: { try adam(lr: 0.01) }, name: "adam cnn")
    }

    func testUnusedParameterIsAnError() throws {
        for stage in ShardingStage.allCases {
            let m = try InProcessWorld.run(size: 2) { group -> String in
                let model = TwoBranches(seed: 1)
                let opt = try ShardedOptimizer(model, group: group, transformation: try sgd(lr: 0.1), stage: stage)
                Loss.mseLoss(model(Tensor.ones([1, 3])), Tensor.zeros([1, 2])).backward()
                do { try opt.step(); return "no error" } catch { return "\(error)" }
            }
            XCTAssertEqual(m[1], "rank 1, step 0: ShardedOptimizer: 2 of 4 parameters received no gradient in this backward: 'extra.weight', 'extra.bias'; expected every parameter to take part in the loss", "\(stage)")
        }
    }

    /// Memory per rank by tag against the ZeRO formulas (float32, Ψ parameters, Adam K = 2):
    /// stage 0 (DDP): P 4Ψ, G 4Ψ (`.grad`) + 4Ψ (bucket buffers), O 8Ψ;
    /// stage 1: P 4Ψ, G 4Ψ + 4Ψ/N, O 8Ψ/N; stage 2: P 4Ψ, G 4Ψ/N, O 8Ψ/N; within 10%.
    /// In-process ranks share the allocator, so rank 0 reads the total of all ranks at a
    /// barrier after the step (before `.grad` is cleared), minus the baseline, and divides by N.
    func testMemoryPerRankMatchesZeROFormulas() throws {
        let build: ModelBuilder = { seed in
            let g = Generator(seed: seed)
            return Sequential([Linear(64, 64, generator: g), ReLU(), Linear(64, 61, generator: g)])
        }
        let psi = Double(64 * 64 + 64 + 64 * 61 + 61)
        for size in [2, 3] {
            for stage in [0, 1, 2] {
                let data = Batches(steps: 1, batch: 6, sample: [64], dtype: .float32, seed: 5)
                let base = Memory.stats()
                let readings = try InProcessWorld.run(size: size) { group -> [Double] in
                    let model = build(UInt64(group.rank))
                    let (x, y) = data.local(0, rank: group.rank, size: size)
                    var keep: [AnyObject] = []
                    if stage == 0 {
                        let ddp = try DistributedDataParallel(model, group: group)
                        var opt = Optimizer(try adam(lr: 1e-3), params: model.parameters.map(\.value))
                        Loss.crossEntropy(logits: ddp(x), targets: y).backward()
                        try ddp.finishGradientSync()
                        optimizerStep(&opt, model)
                        keep = [ddp, OptimizerBox(opt)]
                    } else {
                        let opt = try ShardedOptimizer(model, group: group, transformation: try adam(lr: 1e-3),
                                                       stage: ShardingStage(rawValue: stage)!, bucketCapBytes: 4096)
                        Loss.crossEntropy(logits: model(x), targets: y).backward()
                        try opt.step()
                        keep = [opt]
                    }
                    try group.barrier()
                    var out: [Double] = []
                    if group.rank == 0 {
                        let s = Memory.stats()
                        out = [MemoryTag.parameters, .gradients, .optimizerState].map { Double(s.current($0) - base.current($0)) / Double(size) }
                    }
                    try group.barrier()
                    withExtendedLifetime(keep) {}
                    return out
                }
                let n = Double(size)
                let expected: [Double]
                switch stage {
                case 0: expected = [4 * psi, 8 * psi, 8 * psi]
                case 1: expected = [4 * psi, 4 * psi + 4 * psi / n, 8 * psi / n]
                default: expected = [4 * psi, 4 * psi / n, 8 * psi / n]
                }
                for (k, tag) in ["parameters", "gradients", "optimizerState"].enumerated() {
                    let got = readings[0][k]
                    print("memory per rank, world \(size), stage \(stage), \(tag): \(Int(got)) B, ZeRO formula \(Int(expected[k])) B")
                    XCTAssertEqual(got, expected[k], accuracy: 0.1 * expected[k], "world \(size), stage \(stage), \(tag)")
                }
            }
        }
    }
}

/// Keeps an optimizer (a struct) alive as an object.
final class OptimizerBox {
    let optimizer: Optimizer
    init(_ o: Optimizer) { optimizer = o }
}
