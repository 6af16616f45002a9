import XCTest
import Collectives
import Datasets
import TensorCore
@testable import DataParallel
@testable import Training

/// `Trainer` as ranks of a data-parallel run: N in-process ranks with the same global
/// batch equal one process, with and without micro-batches.
final class DataParallelTrainingTests: XCTestCase {
    static let data: String = try! FashionMNIST.writeSynthetic(train: 96, test: 20)

    func config(micro: Int? = nil) -> TrainConfig {
        var c = TrainConfig()
        c.model = "lenet5"  // no BatchNorm, no dropout: ranks and one process do the same arithmetic
        c.batchSize = 24
        c.epochs = 1
        c.lr = 0.05
        c.dataDir = Self.data
        c.prefetch = 0
        c.threads = 1
        c.microBatches = micro
        return c
    }

    func weights(_ t: Trainer) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: t.model.stateDict().filter { $0.1.dtype == .float32 }.map { ($0.0, $0.1.scalars(as: Float.self)) })
    }

    func testRanksEqualOneProcess() throws {
        let single = try Trainer(config: config())
        single.quiet = true
        let reference = try single.trainEpoch(0)
        let refWeights = weights(single)
        for size in [2, 3] {
            for micro in [nil, 2] as [Int?] {
                // Build the trainers one after another: each seeds the default generator and
                // initialises its model from it, so every rank starts from the same weights.
                let box = TrainerBox(try (0..<size).map { _ in try Trainer(config: config(micro: micro)) })
                let trainers = box.trainers
                let results = try InProcessWorld.run(size: size) { group in
                    let t = box.trainers[group.rank]
                    t.quiet = true
                    try DataParallelTraining.attach(t, group: group)
                    let r = try t.trainEpoch(0)
                    return [r.loss, r.accuracy]
                }
                for (rank, t) in trainers.enumerated() {
                    var maxDiff: Float = 0
                    for (name, w) in refWeights {
                        for (a, b) in zip(w, weights(t)[name]!) { maxDiff = Swift.max(maxDiff, abs(a - b)) }
                    }
                    XCTAssertLessThan(maxDiff, 1e-5, "size \(size), micro \(micro ?? 1), rank \(rank): weights differ by \(maxDiff)")
                }
                // Epoch metrics are over all ranks' rows: the same as one process up to rounding.
                XCTAssertEqual(results[0][0], reference.loss, accuracy: 1e-4)
                XCTAssertEqual(results[0][1], reference.accuracy, accuracy: 1e-9)
                XCTAssertEqual(results[0], results[size - 1])
            }
        }
    }
}

extension DataParallelTrainingTests {
    func testShardedStagesEqualDDPAndHoldAShardOfTheState() throws {
        // Reference: DDP on 2 ranks (same global batch, same arithmetic order as the sharded
        // reduce-scatter in process: both sum in rank order).
        func train(_ attach: @escaping @Sendable (Trainer, InProcessGroup) throws -> Void) throws -> ([[Float]], [Int]) {
            let box = TrainerBox(try (0..<2).map { _ in try Trainer(config: config()) })
            let states = try InProcessWorld.run(size: 2) { group in
                let t = box.trainers[group.rank]
                t.quiet = true
                try attach(t, group)
                _ = try t.trainEpoch(0)
                return t.optimizer.stateDict().filter { $0.key != "step" }.values.reduce(0) { $0 + $1.count }
            }
            return (box.trainers.map { t in t.model.parameters.flatMap { $0.value.scalars(as: Float.self) } }, states)
        }
        let (ddp, ddpState) = try train { t, g in try DataParallelTraining.attach(t, group: g) }
        for stage in [ShardingStage.optimizerState, .gradients] {
            let (sharded, trainerState) = try train { t, g in try DataParallelTraining.attachSharded(t, group: g, stage: stage) }
            XCTAssertEqual(sharded[0], ddp[0], "stage \(stage.rawValue): weights equal DDP + the same optimizer")
            XCTAssertEqual(sharded[0], sharded[1], "replicas agree")
            XCTAssertEqual(trainerState, [0, 0], "the trainer's own optimizer state is freed")
        }
        XCTAssertGreaterThan(ddpState[0], 0)
    }

    func testStageTwoRefusesMicroBatches() throws {
        let box = TrainerBox([try Trainer(config: config(micro: 2))])
        XCTAssertThrowsError(try InProcessWorld.run(size: 1) { g in try DataParallelTraining.attachSharded(box.trainers[0], group: g, stage: .gradients) }) { e in
            XCTAssertTrue("\(e)".contains("stage 2") && "\(e)".contains("micro-batches"), "\(e)")
        }
    }
}

/// Hands each rank thread its own trainer. `@unchecked Sendable`: rank r touches only
/// `trainers[r]`, and the test reads them after every rank thread has finished.
final class TrainerBox: @unchecked Sendable {
    let trainers: [Trainer]
    init(_ trainers: [Trainer]) { self.trainers = trainers }
}

/// Checkpoints of sharded runs: the gathered optimizer state is the unsharded one, and a
/// run resumed from it (at another world size, or from a DDP checkpoint) continues exactly
/// as the uninterrupted run.
final class ShardedCheckpointTests: XCTestCase {
    func config() -> TrainConfig {
        var c = TrainConfig()
        c.model = "lenet5"
        c.epochs = 2
        c.batchSize = 24  // 12 or 8 rows per rank
        c.lr = 0.05
        c.dataDir = DataParallelTrainingTests.data
        c.prefetch = 0
        c.threads = 1
        return c
    }

    /// Trains `epochs` epochs on `size` ranks (DDP, a ZeRO stage 1/2 update, or stage 3
    /// with `fullyShard`); returns rank 0's weights, gathered optimizer state and checkpoint.
    func run(size: Int, stage: ShardingStage?, fullyShard: Bool = false, epochs: Range<Int>,
             from ck: Checkpoint? = nil) throws -> (weights: [Float], state: [String: Tensor], ck: Checkpoint) {
        let box = TrainerBox(try (0..<size).map { _ in try Trainer(config: config()) })
        let start = CheckpointBox(ck)
        let out = try InProcessWorld.run(size: size) { group -> CheckpointBox in
            let t = box.trainers[group.rank]
            t.quiet = true
            if fullyShard {
                try DataParallelTraining.attachFullySharded(t, group: group)
            } else if let stage {
                try DataParallelTraining.attachSharded(t, group: group, stage: stage)
            } else {
                try DataParallelTraining.attach(t, group: group)
            }
            if let ck = start.ck { try t.restore(ck) }
            for e in epochs { _ = try t.trainEpoch(e) }
            let state = try t.distributed?.optimizerStateDict?() ?? t.optimizer.stateDict()
            let model = try t.distributed?.modelStateDict?()  // collective under stage 3
            return CheckpointBox(t.checkpoint(optimizerState: state, modelState: model))
        }
        let ck0 = out[0].ck!
        let names = box.trainers[0].model.namedParameters().map(\.0)
        return (names.flatMap { ck0.model[$0]!.scalars(as: Float.self) }, ck0.optimizer, ck0)
    }

    func testGatheredStateEqualsUnshardedAndResumesAtAnotherWorldSize() throws {
        let ddp = try run(size: 2, stage: nil, epochs: 0..<1)
        let sharded = try run(size: 2, stage: .optimizerState, epochs: 0..<1)
        XCTAssertEqual(sharded.weights, ddp.weights)
        XCTAssertEqual(Set(sharded.state.keys), Set(ddp.state.keys), "same keys as the unsharded optimizer")
        for (k, v) in ddp.state {
            XCTAssertEqual(sharded.state[k]!.shape, v.shape, k)
            XCTAssertEqual(sharded.state[k]!.scalars(as: Double.self), v.scalars(as: Double.self), "key \(k)")
        }
        // The uninterrupted two-epoch run, and resumes from the epoch-1 checkpoints.
        let straight = try run(size: 2, stage: .optimizerState, epochs: 0..<2)
        let resumedSharded3 = try run(size: 3, stage: .optimizerState, epochs: 1..<2, from: sharded.ck)
        let resumedFromDDP = try run(size: 2, stage: .gradients, epochs: 1..<2, from: ddp.ck)
        let resumedAsDDP = try run(size: 2, stage: nil, epochs: 1..<2, from: sharded.ck)
        for (name, r) in [("sharded at 3 ranks", resumedSharded3), ("sharded from DDP", resumedFromDDP), ("DDP from sharded", resumedAsDDP)] {
            var diff: Float = 0
            for (a, b) in zip(r.weights, straight.weights) { diff = Swift.max(diff, abs(a - b)) }
            XCTAssertLessThan(diff, 1e-5, "\(name): weights differ from the uninterrupted run by \(diff)")
        }
    }

    /// ZeRO stage 3 in the Trainer on lenet5 (a container of two Sequentials: the units are
    /// found inside it and gathered by forward hooks): the same weights and optimizer state
    /// as DDP, and its checkpoint resumes under stage 3 at another world size and under DDP.
    func testFullyShardedTrainerEqualsDDPAndResumes() throws {
        let ddp = try run(size: 2, stage: nil, epochs: 0..<1)
        let full = try run(size: 2, stage: nil, fullyShard: true, epochs: 0..<1)
        var diff: Float = 0
        for (a, b) in zip(full.weights, ddp.weights) { diff = Swift.max(diff, abs(a - b)) }
        XCTAssertLessThan(diff, 1e-6, "stage 3 vs DDP: weights differ by \(diff)")
        XCTAssertGreaterThan(full.weights.count, 60_000)
        XCTAssertEqual(Set(full.state.keys), Set(ddp.state.keys))
        let straight = try run(size: 2, stage: nil, epochs: 0..<2)
        let resumed3 = try run(size: 3, stage: nil, fullyShard: true, epochs: 1..<2, from: full.ck)
        let resumedAsDDP = try run(size: 2, stage: nil, epochs: 1..<2, from: full.ck)
        for (name, r) in [("stage 3 at 3 ranks", resumed3), ("DDP from stage 3", resumedAsDDP)] {
            var d: Float = 0
            for (a, b) in zip(r.weights, straight.weights) { d = Swift.max(d, abs(a - b)) }
            XCTAssertLessThan(d, 1e-5, "\(name): weights differ from the uninterrupted run by \(d)")
        }
        // Evaluation runs on the sharded model (each unit gathered and freed by its hooks).
        let box = TrainerBox(try (0..<2).map { _ in try Trainer(config: config()) })
        let fullCk = CheckpointBox(full.ck)
        let evals = try InProcessWorld.run(size: 2) { group -> Double in
            let t = box.trainers[group.rank]
            try DataParallelTraining.attachFullySharded(t, group: group)
            try t.restore(fullCk.ck!)
            return t.evaluate().loss
        }
        let reference = try Trainer(config: config())
        try reference.restore(ddp.ck)
        XCTAssertEqual(evals[0], evals[1])
        XCTAssertEqual(evals[0], reference.evaluate().loss, accuracy: 1e-5)
    }

    func testBadStateIsRefusedNamingTheKey() throws {
        let ddp = try run(size: 1, stage: nil, epochs: 0..<1)
        var bad = ddp.state
        let key = bad.keys.first { $0.hasSuffix(".momentum") }!
        bad[key] = Tensor.zeros([3])
        let box = TrainerBox([try Trainer(config: config())])
        let badState = bad
        XCTAssertThrowsError(try InProcessWorld.run(size: 1) { g in
            let t = box.trainers[0]
            try DataParallelTraining.attachSharded(t, group: g, stage: .optimizerState)
            try t.distributed!.loadOptimizerStateDict!(badState)
        }) { e in XCTAssertTrue("\(e)".contains("'\(key)'") && "\(e)".contains("found [3]"), "\(e)") }
    }
}

/// Hands a checkpoint to rank threads (read only). `@unchecked Sendable`: never mutated.
final class CheckpointBox: @unchecked Sendable {
    let ck: Checkpoint?
    init(_ ck: Checkpoint?) { self.ck = ck }
}
