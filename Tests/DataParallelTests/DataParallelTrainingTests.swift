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
