import XCTest
import TensorCore
import Layers
import Models

final class ZooTests: XCTestCase {
    func testParameterCounts() throws {
        XCTAssertEqual(try Zoo.make("lenet5").parameterCount, 61_706)
        // 2012 paper layout: conv 34,944 + 307,456 + 885,120 + 663,936 + 442,624; FC 37,752,832 + 16,781,312 + 4,097,000.
        XCTAssertEqual(try Zoo.make("alexnet").parameterCount, 60_965_224)
        XCTAssertEqual(try Zoo.make("alexnet-tv").parameterCount, 61_100_840)
        // ResNet-20 on 1 channel with option-B shortcuts: counted layer by layer below.
        let stem = 16 * 9 + 2 * 16
        func block(_ i: Int, _ o: Int, _ down: Bool) -> Int {
            (o * i * 9 + 2 * o) + (o * o * 9 + 2 * o) + (down ? o * i + 2 * o : 0)
        }
        let stages = block(16, 16, false) * 3 + block(16, 32, true) + block(32, 32, false) * 2 + block(32, 64, true) + block(64, 64, false) * 2
        XCTAssertEqual(try Zoo.make("resnet20").parameterCount, stem + stages + 64 * 10 + 10)
    }

    func testTorchvisionKeys() throws {
        let keys = try Zoo.make("alexnet-tv").stateDict().map(\.0)
        XCTAssertEqual(keys, ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                              "features.6.weight", "features.6.bias", "features.8.weight", "features.8.bias",
                              "features.10.weight", "features.10.bias", "classifier.1.weight", "classifier.1.bias",
                              "classifier.4.weight", "classifier.4.bias", "classifier.6.weight", "classifier.6.bias"])
    }

    func testSmallModelsMapAFashionMNISTBatchToLogits() throws {
        for name in ["lenet5", "alexnet-small", "convnet-bn", "resnet20"] {
            let m = try Zoo.make(name)
            let y = m(Tensor.randn([2, 1, 28, 28], generator: Generator(seed: 1)))
            XCTAssertEqual(y.shape, [2, 10], name)
            XCTAssertTrue(y.doubles().allSatisfy(\.isFinite), name)
        }
    }

    func testSummaryOfLeNet() throws {
        let s = ModelSummary(model: try Zoo.make("lenet5"), inputShape: [1, 28, 28])
        XCTAssertEqual(s.totalParameters, 61_706)
        let conv1 = s.rows[0]
        XCTAssertEqual(conv1.name, "features.0")
        XCTAssertEqual(conv1.outputShape, [6, 28, 28])
        XCTAssertEqual(conv1.flops, 2 * 6 * 28 * 28 * 25)
        XCTAssertEqual(conv1.activationBytes, 6 * 28 * 28 * 4)
        XCTAssertEqual(s.rows.last!.outputShape, [10])
        XCTAssertEqual(s.rows.last!.flops, 2 * 84 * 10)
        XCTAssertEqual(s.rows.reduce(0) { $0 + $1.parameters }, 61_706)
    }

    func testUnknownModelListsTheKnownOnes() {
        XCTAssertThrowsError(try Zoo.make("vgg")) { e in
            XCTAssertTrue("\(e)".hasPrefix("unknown model 'vgg': expected one of lenet5, alexnet"), "\(e)")
        }
    }
}
