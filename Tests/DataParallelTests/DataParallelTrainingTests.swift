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

/// Hands each rank thread its own trainer. `@unchecked Sendable`: rank r touches only
/// `trainers[r]`, and the test reads them after every rank thread has finished.
final class TrainerBox: @unchecked Sendable {
    let trainers: [Trainer]
    init(_ trainers: [Trainer]) { self.trainers = trainers }
}
