import XCTest
import Layers
import TensorCore
@testable import Training

/// Micro-batching and checkpointing inside `Trainer.trainStep`: the same update as the
/// plain step, and checkpointing lowers the measured peak.
final class LowMemoryTrainingTests: XCTestCase {
    static let data: String = try! makeSyntheticFashionMNIST(train: 64, test: 20)

    func trainer(_ model: String, micro: Int? = nil, checkpointing: String? = nil, dropout: Double = 0.5,
                 precision: String? = nil) throws -> Trainer {
        var c = TrainConfig()
        c.model = model
        c.batchSize = 32
        c.lr = 0.05
        c.dataDir = Self.data
        c.prefetch = 0
        c.microBatches = micro
        c.checkpointing = checkpointing
        c.dropout = dropout
        c.precision = precision
        c.threads = 2
        let t = try Trainer(config: c)
        t.quiet = true
        return t
    }

    func weights(_ t: Trainer) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: t.model.stateDict().filter { $0.1.dtype == .float32 }.map { ($0.0, $0.1.scalars(as: Float.self)) })
    }

    func batch(_ t: Trainer) -> (Tensor, Tensor) {
        let b = t.train.epoch(0).first(where: { _ in true })!
        return (b.inputs, b.labels)
    }

    func testMicroBatchesEqualTheFullBatchWithoutBatchNorm() throws {
        // lenet5 has no BatchNorm and no dropout: k micro-batches give the full batch's
        // update up to Float32 summation order.
        let full = try trainer("lenet5")
        let (x, y) = batch(full)
        for _ in 0..<2 { try full.trainStep(inputs: x, labels: y) }
        for k in [2, 3, 32] {
            let micro = try trainer("lenet5", micro: k)
            for _ in 0..<2 { try micro.trainStep(inputs: x, labels: y) }
            var maxDiff: Float = 0
            for (name, w) in weights(full) {
                let v = weights(micro)[name]!
                for i in w.indices { maxDiff = Swift.max(maxDiff, abs(w[i] - v[i])) }
            }
            XCTAssertLessThan(maxDiff, 2e-6, "k = \(k): weights differ by \(maxDiff)")
            XCTAssertGreaterThan(weightsChange(full), 1e-3, "the steps must move the weights")
        }
    }

    func weightsChange(_ t: Trainer) -> Float {
        Generator.manualSeed(t.config.seed)
        let fresh = try! trainer(t.config.model)
        var d: Float = 0
        for (n, w) in weights(t) { for (a, b) in zip(w, weights(fresh)[n]!) { d = Swift.max(d, abs(a - b)) } }
        return d
    }

    func testCheckpointedConvNetBNStepIsBitwiseEqualAndUsesLessMemory() throws {
        // convnet-bn with dropout and BatchNorm: sqrt checkpointing replays dropout masks,
        // updates running statistics once, and gives the same weights bit for bit.
        let plain = try trainer("convnet-bn")
        let (x, y) = batch(plain)
        Generator.manualSeed(5)
        let plainPeak = try plain.memoryReportStep(inputs: x, labels: y).report.peak
        Generator.manualSeed(6)
        try plain.trainStep(inputs: x, labels: y)
        let ck = try trainer("convnet-bn", checkpointing: "sqrt")
        XCTAssertFalse(ck.checkpointPlans.isEmpty)
        Generator.manualSeed(5)
        let ckPeak = try ck.memoryReportStep(inputs: x, labels: y).report.peak
        Generator.manualSeed(6)
        try ck.trainStep(inputs: x, labels: y)
        XCTAssertEqual(weights(ck), weights(plain))
        XCTAssertLessThan(ckPeak, plainPeak, "checkpointing must lower the step's peak (\(ckPeak) vs \(plainPeak))")
    }

    func testAllTechniquesTogetherMatchMixedPrecisionAloneAndCutMemory() throws {
        // fp16 autocast + loss scaling, with and without sqrt checkpointing and 4 micro-batches:
        // checkpointing recomputes under the same autocast policy, so weights are bitwise equal.
        let half = try trainer("convnet-bn", micro: 4, precision: "fp16")
        let (x, y) = batch(half)
        Generator.manualSeed(5)
        try half.trainStep(inputs: x, labels: y)
        let all = try trainer("convnet-bn", micro: 4, checkpointing: "sqrt", precision: "fp16")
        Generator.manualSeed(5)
        try all.trainStep(inputs: x, labels: y)
        XCTAssertEqual(weights(all), weights(half))
        XCTAssertEqual(all.lossScaler?.steps, 1)
        XCTAssertEqual(all.lossScaler?.skippedSteps, 0)
        // The step's peak: plain fp32 full batch against all three techniques.
        let plain = try trainer("convnet-bn")
        let plainPeak = plain.measureStepPeak(batchSize: 32)
        let allPeak = all.measureStepPeak(batchSize: 32)
        XCTAssertLessThan(Double(allPeak), 0.7 * Double(plainPeak), "all techniques: \(allPeak) bytes vs plain \(plainPeak)")
        // The loss scaler's state travels with the checkpoint.
        let ck = all.checkpoint()
        XCTAssertFalse(ck.scaler.isEmpty)
        let resumed = try trainer("convnet-bn", micro: 4, checkpointing: "sqrt", precision: "fp16")
        try resumed.restore(ck)
        XCTAssertEqual(resumed.lossScaler, all.lossScaler)
    }

    func testMemoryCapFailsEarlyNamingCapAndPlannedPeak() throws {
        var c = TrainConfig()
        c.model = "lenet5"
        c.batchSize = 32
        c.dataDir = Self.data
        c.prefetch = 0
        c.memoryCap = 100_000
        let t = try Trainer(config: c)
        t.quiet = true
        XCTAssertThrowsError(try t.run()) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("--memory-cap") && text.contains("100000 bytes") && text.contains("planned peak"), text)
        }
        XCTAssertEqual(t.nextEpoch, 0, "no training happened")
        // The plan's largest batch under a cap really fits, and one more does not.
        let cap = t.measureStepPeak(batchSize: 10) + 1
        let plan = t.planPeak(cap: cap)
        let largest = try XCTUnwrap(plan.largestBatchUnderCap)
        XCTAssertGreaterThanOrEqual(largest, 10)
        XCTAssertLessThanOrEqual(t.measureStepPeak(batchSize: largest), cap)
        XCTAssertGreaterThan(t.measureStepPeak(batchSize: largest + 1), cap)
    }

    func testConfigValidationNamesTheFlag() {
        var c = TrainConfig()
        c.microBatches = 0
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--micro-batches 0")) }
        c.microBatches = nil
        c.checkpointing = "half"
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("'half'")) }
    }
}
