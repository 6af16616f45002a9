import XCTest
import Collectives
import Layers
import Optimizers
import TensorCore
@testable import DataParallel
@testable import Training

/// ZeRO stage 3 with fp16 dynamic loss scaling, and the FSDP prefetch.
///
/// fp16 oracle: DDP + `LossScaler` (the averaged full gradients unscaled and checked on
/// every rank). FSDP unscales each rank's averaged gradient shard (the same products
/// `g · Float(1/S)`) and agrees on overflow by one allreduce of a flag. In process the
/// reduce-scatter sums in rank order as the native allreduce does, so the weights, the
/// skip decisions and the scales must be bitwise equal.
final class FullyShardedPrecisionPrefetchTests: XCTestCase {
    /// The step whose gradient gets an injected inf.
    let injectStep = 1
    let steps = 4

    /// One rank's run: weights, per-step applied flags, scales after each update, and
    /// (FSDP) whether this rank's own shard was finite before the flag allreduce.
    struct Run: Sendable, Equatable {
        var weights: [[Double]]
        var applied: [Bool]
        var scales: [Double]
        var localFinite: [Bool]
    }

    /// `steps` fp16 steps (autocast forward, scaled loss, SGD momentum) on `size` ranks,
    /// DDP or FSDP. At `injectStep` rank 0's gradient of the last parameter (the head's
    /// bias) gets +inf in its last element before accumulation: after the reduction that
    /// element sits in the last rank's shard only, so only the agreed flag can make the
    /// other ranks skip.
    func trainFP16(_ build: @escaping ModelBuilder, size: Int, sharded: Bool, prefetch: Bool = true, data: Batches) throws -> [Run] {
        let steps = self.steps, inject = injectStep
        return try InProcessWorld.run(size: size) { group in
            let model = build(group.rank == 0 ? 42 : 99)
            let precision = MixedPrecision(.float16)
            var scaler = try precision.makeLossScaler()!
            let transformation = try sgd(lr: 0.05, momentum: 0.9)
            let fsdp = sharded ? try FullyShardedDataParallel(model, group: group, transformation: transformation, prefetch: prefetch) : nil
            let ddp = sharded ? nil : try DistributedDataParallel(model, group: group)
            var opt = Optimizer(transformation, params: model.parameters.map(\.value))
            let box = StepBox()
            if group.rank == 0 {
                model.parameters.last!.value.registerHook { g in
                    guard box.step == inject else { return nil }
                    var v = g.to(.float32).contiguous().scalars(as: Float.self)
                    v[v.count - 1] = .infinity
                    return try! Tensor(v, shape: g.shape).to(g.dtype)
                }
            }
            var run = Run(weights: [], applied: [], scales: [], localFinite: [])
            for t in 0..<steps {
                box.step = t
                let (x, y) = data.local(t, rank: group.rank, size: size)
                let logits = try Autocast.widen(precision.autocast { try fsdp.map { try $0(x) } ?? ddp!(x) })
                scaler.scale(Loss.crossEntropy(logits: logits, targets: y)).backward()
                let applied: Bool
                if let fsdp {
                    run.localFinite.append(LossScaler.allFinite(fsdp.shardGrad))
                    try scaler.unscale { try fsdp.unscaleGradients(by: $0) }
                    applied = try scaler.step([]) { try fsdp.step() }
                    if !applied { try fsdp.skipStep() }
                } else {
                    try ddp!.finishGradientSync()
                    applied = scaler.step(model.parameters) { optimizerStep(&opt, model) }
                }
                scaler.update()
                model.zeroGrad()
                run.applied.append(applied)
                run.scales.append(scaler.scale)
            }
            run.weights = try fsdp.map { f in try f.withFullParameters { weights(model) } } ?? weights(model)
            return run
        }
    }

    func testFP16StageThreeEqualsDDPAndSkipsOverflowOnEveryRank() throws {
        let data = Batches(steps: steps, batch: 6, sample: [2, 4, 4], dtype: .float32, seed: 11)
        for size in [2, 3] {
            let oracle = try trainFP16(cnnBuilder, size: size, sharded: false, data: data)
            var expected = Array(repeating: true, count: steps)
            expected[injectStep] = false
            XCTAssertEqual(oracle[0].applied, expected, "world \(size): DDP must skip the step with the injected inf")
            XCTAssertEqual(oracle[0].scales, [65536, 32768, 32768, 32768])
            XCTAssertGreaterThan(maxAbsDiff(oracle[0].weights, weights(cnnBuilder(42))), 1e-3, "the run must move the weights")
            for prefetch in [true, false] {
                let runs = try trainFP16(cnnBuilder, size: size, sharded: true, prefetch: prefetch, data: data)
                for r in 0..<size {
                    XCTAssertEqual(runs[r].applied, oracle[0].applied, "world \(size), rank \(r): skip decisions")
                    XCTAssertEqual(runs[r].scales, oracle[0].scales, "world \(size), rank \(r): scales")
                    XCTAssertEqual(runs[r].weights, oracle[0].weights,
                                   "world \(size), rank \(r), prefetch \(prefetch): max diff \(maxAbsDiff(runs[r].weights, oracle[0].weights))")
                }
                // The inf reached only the last rank's shard: the others skipped on the agreed flag.
                XCTAssertTrue(runs[0].localFinite[injectStep], "world \(size): rank 0's own shard is finite")
                XCTAssertFalse(runs[size - 1].localFinite[injectStep], "world \(size): the last rank's shard holds the inf")
            }
        }
    }

    /// The Trainer with `--precision fp16` under ZeRO stages 1, 2 and 3 equals DDP + fp16
    /// (weights, scaler state) on lenet5 at 2 ranks. (Before, stage 2 never unscaled: its
    /// `.grad` is freed in the hooks; stage 1 checked each rank's unreduced gradients.)
    func testTrainerFP16ShardedStagesEqualDDP() throws {
        func config() -> TrainConfig {
            var c = TrainConfig()
            c.model = "lenet5"
            c.batchSize = 24
            c.epochs = 1
            c.lr = 0.05
            c.dataDir = DataParallelTrainingTests.data
            c.prefetch = 0
            c.threads = 1
            c.precision = "fp16"
            return c
        }
        func train(stage: Int) throws -> ([Float], [String: Tensor]) {
            let box = TrainerBox(try (0..<2).map { _ in try Trainer(config: config()) })
            let out = try InProcessWorld.run(size: 2) { group -> [Float] in
                let t = box.trainers[group.rank]
                t.quiet = true
                switch stage {
                case 3: try DataParallelTraining.attachFullySharded(t, group: group)
                case 1, 2: try DataParallelTraining.attachSharded(t, group: group, stage: ShardingStage(rawValue: stage)!)
                default: try DataParallelTraining.attach(t, group: group)
                }
                _ = try t.trainEpoch(0)
                let model = try t.distributed?.modelStateDict?() ?? t.model.namedParameters().map { ($0.0, $0.1.value) }
                let names = Set(t.model.namedParameters().map(\.0))
                return model.filter { names.contains($0.0) }.flatMap { $0.1.scalars(as: Float.self) }
            }
            XCTAssertEqual(out[0], out[1], "ranks agree")
            return (out[0], box.trainers[0].lossScaler!.stateDict())
        }
        let (ddp, ddpScaler) = try train(stage: 0)
        for stage in [1, 2, 3] {
            let (full, fullScaler) = try train(stage: stage)
            XCTAssertEqual(full.count, ddp.count)
            var diff: Float = 0
            for (a, b) in zip(full, ddp) { diff = Swift.max(diff, abs(a - b)) }
            XCTAssertLessThan(diff, 1e-6, "stage \(stage) + fp16 vs DDP + fp16: weights differ by \(diff)")
            for k in LossScaler.stateKeys {
                XCTAssertEqual(fullScaler[k]!.scalars(as: Double.self), ddpScaler[k]!.scalars(as: Double.self), "stage \(stage): scaler '\(k)'")
            }
        }
        XCTAssertGreaterThan(ddpScaler["steps"]!.scalars(as: Double.self)[0], 0)
    }

    /// Prefetch on and off give bitwise the same weights (the same gathers, issued earlier).
    func testPrefetchOnAndOffAreBitwiseEqual() throws {
        let data = Batches(steps: 3, batch: 6, sample: [2, 4, 4], dtype: .float32, seed: 12)
        for (name, build) in [("cnn", cnnBuilder), ("residual", residualBuilder), ("bn", bnBuilder)] {
            for size in [2, 3] {
                func run(_ prefetch: Bool) throws -> [[[Double]]] {
                    try InProcessWorld.run(size: size) { group in
                        let model = build(group.rank == 0 ? 42 : 99)
                        let fsdp = try FullyShardedDataParallel(model, group: group, transformation: try adam(lr: 0.01), prefetch: prefetch)
                        for t in 0..<3 {
                            let (x, y) = data.local(t, rank: group.rank, size: size)
                            Loss.crossEntropy(logits: try fsdp(x), targets: y).backward()
                            try fsdp.step()
                        }
                        XCTAssertTrue(model.parameters.allSatisfy { $0.value.storageBlock.isReleased }, "released between steps")
                        return try fsdp.withFullParameters { weights(model) }
                    }
                }
                let on = try run(true), off = try run(false)
                for r in 0..<size { XCTAssertEqual(on[r], off[r], "\(name), world \(size), rank \(r)") }
                XCTAssertGreaterThan(maxAbsDiff(on[0], weights(build(42))), 1e-3, "\(name): the run must move the weights")
            }
        }
    }
}

/// The step counter the injection hook reads. `@unchecked Sendable`: written and read on
/// the rank's own thread only (the hook runs inside that rank's backward).
final class StepBox: @unchecked Sendable {
    var step = 0
}
