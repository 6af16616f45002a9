import XCTest
import Layers
import Optimizers
import TensorCore
@testable import Training

/// The memory report against sizes computed by hand for a small MLP.
final class MemoryReportTests: XCTestCase {
    func testSmallMLPReportMatchesHandComputedSizes() throws {
        Generator.manualSeed(0)
        // Linear(4 -> 3) - ReLU - Linear(3 -> 2), Float32, batch 5.
        let model = Sequential(Linear(4, 3), ReLU(), Linear(3, 2))
        let params = model.parameters
        var opt = Optimizer(try sgd(lr: 0.1, momentum: 0.9), params: params.map(\.value))
        let x = Memory.withTag(.activations) { Tensor.randn([5, 4]) }
        let y = try Tensor([0, 1, 1, 0, 1] as [Int64], shape: [5])
        let (report, _) = MemoryReport.record(model: model, batchSize: 5) {
            Memory.mark("forward")
            let loss = Memory.withTag(.activations) { Loss.crossEntropy(logits: model(x), targets: y) }
            Memory.mark("backward")
            Memory.withTag(.workspace) { loss.backward() }
            Memory.mark("optimizer step")
            var values = params.map { _ in Tensor.zeros([0]) }
            for i in params.indices { swap(&values[i], &params[i].value) }
            opt.step(&values)
            for i in params.indices { swap(&values[i], &params[i].value) }
            model.zeroGrad()
        }
        // Parameters: (4·3 + 3) + (3·2 + 2) = 23 floats = 92 bytes; the same for gradients
        // (all live at the end of backward) and for SGD's momentum buffers.
        XCTAssertEqual(report.before.current(.parameters), 92)
        XCTAssertEqual(report.after.peak(.gradients), 92)
        XCTAssertEqual(report.after.current(.gradients), 0, "zeroGrad frees the gradients")
        XCTAssertEqual(report.after.current(.optimizerState), 92)
        // Saved for backward, per layer (bytes allocated in the layer's forward and still
        // live when backward starts): Linear(4 -> 3) leaves its output [5, 3], which ReLU
        // keeps as its input (the matmul result before the bias is freed); ReLU leaves its
        // output [5, 3], which the second matmul keeps; Linear(3 -> 2)'s output, the
        // logits [5, 2], is not kept: cross-entropy saves its own softmax [5, 2] instead,
        // which is outside any layer (unattributed).
        let rows = Dictionary(uniqueKeysWithValues: report.layers.map { ($0.name, $0.savedBytes) })
        XCTAssertEqual(rows["0"], 5 * 3 * 4)
        XCTAssertEqual(rows["1"], 5 * 3 * 4)
        XCTAssertEqual(rows["2"], 0)
        XCTAssertGreaterThanOrEqual(report.unattributedBytes, 5 * 2 * 4)
        // The timeline's peak equals the allocator's peak over the step.
        XCTAssertEqual(report.timeline.peak, report.after.peak)
        XCTAssertEqual(report.timeline.events.filter { $0.label != nil }.map { $0.label! }, ["start", "forward", "backward", "optimizer step"])
        // JSON has the tags and the layer rows.
        let json = try JSONSerialization.jsonObject(with: report.json()) as! [String: Any]
        XCTAssertEqual((json["tags"] as! [String: [String: Int]])["parameters"]!["before"], 92)
        XCTAssertEqual((json["layers"] as! [[String: Any]]).count, 3)
        XCTAssertTrue(report.text().contains("activations saved for backward"))
    }

    func testTimelineAllocationsAndFreesBalance() {
        let (_, tl) = Memory.recordTimeline {
            let a = Tensor.zeros([256])
            Memory.mark("middle")
            let b = a + a
            _ = b
        }
        // Every allocation in the timeline is freed by its end (the tensors died inside).
        XCTAssertEqual(tl.events.filter { $0.label == nil }.reduce(0) { $0 + $1.bytes }, 0)
        XCTAssertEqual(tl.peak - tl.events[0].current, 2048)
        XCTAssertTrue(tl.chart(rows: 4).contains("middle"))
    }
}
