import Foundation
import XCTest
import TensorCore
@testable import Datasets

/// A tiny in-memory dataset: sample i is an image filled with i / 100, label i % 3.
struct Ramp: Dataset {
    var count: Int
    var sampleShape: [Int] { [1, 4, 4] }
    var classCount: Int { 3 }
    func sample(_ index: Int, into: UnsafeMutableBufferPointer<Float>) -> Int {
        for k in 0..<16 { into[k] = Float(index) / 100 + Float(k) / 1000 }
        return index % 3
    }
}

final class DataLoaderTests: XCTestCase {
    func testBatchesCoverEverySampleOnceAndRespectDropLast() throws {
        let loader = try DataLoader(Ramp(count: 10), options: LoaderOptions(batchSize: 4, shuffle: true, seed: 1, prefetch: 0))
        XCTAssertEqual(loader.batchCount, 3)
        var labels: [Int64] = []
        var ids: [Int] = []
        for b in loader.epoch(0) {
            XCTAssertEqual(Array(b.inputs.shape.dropFirst()), [1, 4, 4])
            labels += b.labels.scalars(as: Int64.self)
            ids += (0..<b.inputs.shape[0]).map { Int((b.inputs.doubles()[$0 * 16] * 100).rounded()) }
        }
        XCTAssertEqual(ids.sorted(), Array(0..<10))
        XCTAssertEqual(labels, ids.map { Int64($0 % 3) })
        let dl = try DataLoader(Ramp(count: 10), options: LoaderOptions(batchSize: 4, dropLast: true, prefetch: 0))
        XCTAssertEqual(Array(dl.epoch(0)).count, 2)
    }

    func testShuffleIsSeededPerEpochAndPrefetchDoesNotChangeBatches() throws {
        let aug: [Augmentation] = [.randomCrop(padding: 1), .horizontalFlip(p: 0.5),
                                   .randomErasing(p: 0.5, scale: 0.1...0.3, ratio: 0.5...2, value: 0)]
        let a = try DataLoader(Ramp(count: 37), options: LoaderOptions(batchSize: 5, seed: 3, augmentations: aug, prefetch: 0))
        let b = try DataLoader(Ramp(count: 37), options: LoaderOptions(batchSize: 5, seed: 3, augmentations: aug, prefetch: 3))
        let ea = Array(a.epoch(2)).map { $0.inputs.doubles() }
        let eb = Array(b.epoch(2)).map { $0.inputs.doubles() }
        XCTAssertEqual(ea, eb)
        XCTAssertNotEqual(a.order(epoch: 0), a.order(epoch: 1))
        XCTAssertEqual(a.order(epoch: 1), b.order(epoch: 1))
        // Resuming mid-epoch yields the same remaining batches.
        let tail = Array(b.epoch(2, startingAt: 4)).map { $0.inputs.doubles() }
        XCTAssertEqual(tail, Array(ea[4...]))
    }

    func testAnEpochAbandonedEarlyIsFreedAndItsProducerStops() throws {
        let loader = try DataLoader(Ramp(count: 200), options: LoaderOptions(batchSize: 4, prefetch: 2))
        weak var weakIterator: EpochIterator<Ramp>?
        weak var weakQueue: PrefetchQueue<Ramp>?
        do {
            let it = loader.epoch(0)
            weakIterator = it
            weakQueue = it.queue
            XCTAssertNotNil(it.next())
        }
        XCTAssertNil(weakIterator, "the iterator must not be kept alive by its prefetch thread")
        // The producer sees the cancellation, returns, and releases the queue.
        let deadline = Date().addingTimeInterval(5)
        while weakQueue != nil && Date() < deadline { usleep(1000) }
        XCTAssertNil(weakQueue, "the prefetch thread did not stop within 5 s")
    }

    func testAugmentationsOnAKnownImage() {
        let shape = [1, 2, 3]
        var img: [Float] = [1, 2, 3, 4, 5, 6]
        var scratch = [Float](repeating: 0, count: 6)
        let g = Generator(seed: 0)
        img.withUnsafeMutableBufferPointer { x in
            scratch.withUnsafeMutableBufferPointer { s in
                Augmentation.horizontalFlip(p: 1).apply(x, shape: shape, scratch: s, generator: g)
            }
        }
        XCTAssertEqual(img, [3, 2, 1, 6, 5, 4])
        img.withUnsafeMutableBufferPointer { x in
            scratch.withUnsafeMutableBufferPointer { s in
                Augmentation.normalize(mean: [1], std: [2]).apply(x, shape: shape, scratch: s, generator: g)
            }
        }
        XCTAssertEqual(img, [1, 0.5, 0, 2.5, 2, 1.5])
        // A crop with padding keeps the values, shifted, and fills with zeros.
        var many: [[Float]] = []
        for seed in 0..<20 {
            var im: [Float] = [1, 2, 3, 4, 5, 6]
            im.withUnsafeMutableBufferPointer { x in
                scratch.withUnsafeMutableBufferPointer { s in
                    Augmentation.randomCrop(padding: 1).apply(x, shape: shape, scratch: s, generator: Generator(seed: UInt64(seed)))
                }
            }
            XCTAssertTrue(im.allSatisfy { [0, 1, 2, 3, 4, 5, 6].contains($0) })
            many.append(im)
        }
        XCTAssertTrue(many.contains([1, 2, 3, 4, 5, 6]) || Set(many.map { $0.description }).count > 1)
    }

    func testBadOptionsAreRejected() {
        XCTAssertThrowsError(try DataLoader(Ramp(count: 3), options: LoaderOptions(batchSize: 0))) { e in
            XCTAssertEqual("\(e)", "loader: batch size 0: expected a positive number")
        }
        XCTAssertThrowsError(try DataLoader(Ramp(count: 3), options: LoaderOptions(augmentations: [.normalize(mean: [0, 0], std: [1, 1])]))) { e in
            XCTAssertEqual("\(e)", "augmentation: normalize has 2 means and 2 stds for 1 channels")
        }
        XCTAssertThrowsError(try DataLoader(Ramp(count: 3), options: LoaderOptions(augmentations: [.horizontalFlip(p: 1.5)]))) { e in
            XCTAssertEqual("\(e)", "augmentation: probability 1.5: expected a value in [0, 1]")
        }
    }
}
