import XCTest
import Foundation
import Datasets
import Layers
import TensorCore
@testable import Training

/// A small synthetic Fashion-MNIST-format dataset (see `FashionMNIST.writeSynthetic`).
func makeSyntheticFashionMNIST(train: Int, test: Int) throws -> String {
    try FashionMNIST.writeSynthetic(train: train, test: test)
}

final class TrainerTests: XCTestCase {
    static let data: String = try! makeSyntheticFashionMNIST(train: 384, test: 200)

    func config(_ model: String = "lenet5", epochs: Int = 3) -> TrainConfig {
        var c = TrainConfig()
        c.model = model
        c.epochs = epochs
        c.batchSize = 32
        c.lr = 0.05
        c.dataDir = Self.data
        c.prefetch = 1
        return c
    }

    func testLossFallsAndAccuracyRisesOnATinySet() throws {
        let t = try Trainer(config: config())
        t.quiet = true
        let r = try t.run()
        XCTAssertEqual(r.count, 3)
        XCTAssertLessThan(r.last!.trainLoss, 0.5 * r.first!.trainLoss, "\(r.map(\.trainLoss))")
        XCTAssertGreaterThan(r.last!.testAccuracy, 0.8)
    }

    func testSameSeedSameLossCurve() throws {
        var c = config("convnet-bn", epochs: 2)
        c.trainLimit = 128
        let a = try Trainer(config: c); a.quiet = true
        let ra = try a.run().map(\.trainLoss)
        let b = try Trainer(config: c); b.quiet = true
        let rb = try b.run().map(\.trainLoss)
        XCTAssertEqual(ra, rb)
    }

    func testResumeContinuesBitForBit() throws {
        // convnet-bn: dropout (RNG state), BatchNorm buffers and momentum state all matter.
        var c = config("convnet-bn", epochs: 2)
        c.trainLimit = 128
        c.cropPadding = 2
        c.flip = true
        let straight = try Trainer(config: c); straight.quiet = true
        try straight.run()

        let dir = NSTemporaryDirectory() + "loom-resume-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The same run interrupted after epoch 1 (the schedule still spans 2 epochs).
        let part = try Trainer(config: c, output: dir); part.quiet = true
        try part.run(stopAfter: 1)
        let resumed = try Trainer(config: c, output: dir); resumed.quiet = true
        try resumed.restore(try Checkpoint.load(dir + "/checkpoint.safetensors"))
        XCTAssertEqual(resumed.nextEpoch, 1)
        try resumed.run()

        let sa = Dictionary(uniqueKeysWithValues: straight.model.stateDict())
        let sb = Dictionary(uniqueKeysWithValues: resumed.model.stateDict())
        XCTAssertEqual(Set(sa.keys), Set(sb.keys))
        for (k, v) in sa {
            let (x, y) = (v.doubles(), sb[k]!.doubles())
            let maxDiff = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertTrue(x == y, "\(k): resumed run differs, max |diff| \(maxDiff)")
        }
        let lines = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
    }

    func testResumeWithADifferentConfigIsRefused() throws {
        let dir = NSTemporaryDirectory() + "loom-resume2-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = config(epochs: 1)
        c.trainLimit = 64
        let t = try Trainer(config: c, output: dir); t.quiet = true
        try t.run()
        var other = c
        other.lr = 0.1
        let u = try Trainer(config: other)
        XCTAssertThrowsError(try u.restore(try Checkpoint.load(dir + "/checkpoint.safetensors"))) { e in
            XCTAssertTrue("\(e)".contains("different configuration"), "\(e)")
        }
    }

    func testBadConfigNamesTheFlag() {
        var c = TrainConfig()
        c.lr = -1
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual("\($0)", "--lr -1.0: expected a positive learning rate") }
        c = TrainConfig(); c.norm = "l3"
        XCTAssertThrowsError(try c.validate()) { XCTAssertEqual("\($0)", "--norm 'l3': expected l2, l1 or linf") }
        c = TrainConfig(); c.model = "alexnet"; c.dataDir = Self.data
        XCTAssertThrowsError(try Trainer(config: c)) { XCTAssertTrue("\($0)".contains("takes [3, 224, 224] inputs"), "\($0)") }
        c = TrainConfig(); c.dataDir = "/nonexistent"
        XCTAssertThrowsError(try Trainer(config: c)) { XCTAssertTrue("\($0)".contains("/nonexistent/train-images-idx3-ubyte.gz: file not found"), "\($0)") }
    }

    func testConfusionMatrixCounts() throws {
        var cm = ConfusionMatrix(classes: 3)
        let logits = try Tensor([5, 0, 0, 0, 5, 0, 0, 5, 0, 0, 0, 5] as [Float], shape: [4, 3])
        cm.add(logits: logits, labels: Tensor([0, 1, 2, 2] as [Int64]))
        XCTAssertEqual(cm.counts, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])
        XCTAssertEqual(cm.accuracy, 0.75)
        XCTAssertTrue(cm.table().contains("50.0%"))
    }

    func testProgressBarPrintsPlainLinesWhenNotATerminal() {
        XCTAssertEqual(formatDuration(75), "1:15")
        XCTAssertEqual(formatDuration(3725), "1:02:05")
    }
}
