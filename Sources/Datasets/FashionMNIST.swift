import TensorCore
/// Fashion-MNIST (Xiao et al. 2017): 28x28 grayscale images of 10 clothing classes,
/// 60,000 for training and 10,000 for testing, read from the gzipped IDX files that
/// Debian's `dataset-fashion-mnist` package installs.
public struct FashionMNIST: Dataset {
    public enum Split: String, Sendable { case train, test }

    /// Where Debian's package puts the files.
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    public let split: Split
    /// Pixels, [count, 28, 28] row-major, 0...255.
    public let pixels: [UInt8]
    /// Labels 0...9.
    public let labels: [UInt8]

    public var count: Int { labels.count }
    public var sampleShape: [Int] { [1, 28, 28] }
    public var classCount: Int { 10 }

    /// Loads a split from `directory` (files `train-images-idx3-ubyte.gz` etc., or without `.gz`).
    public init(directory: String = FashionMNIST.defaultDirectory, split: Split) throws(DatasetError) {
        let prefix = split == .train ? "train" : "t10k"
        let imagesPath = try FashionMNIST.locate(directory, "\(prefix)-images-idx3-ubyte")
        let labelsPath = try FashionMNIST.locate(directory, "\(prefix)-labels-idx1-ubyte")
        let images = try IDX.read(imagesPath)
        let labels = try IDX.read(labelsPath)
        guard images.dims.count == 3, images.dims[1] == 28, images.dims[2] == 28 else {
            throw DatasetError(path: imagesPath, "expected dimensions [N, 28, 28], found \(images.dims)")
        }
        guard labels.dims.count == 1, labels.dims[0] == images.dims[0] else {
            throw DatasetError(path: labelsPath, "expected [\(images.dims[0])] labels to match the images, found dimensions \(labels.dims)")
        }
        if let bad = labels.data.firstIndex(where: { $0 > 9 }) {
            throw DatasetError(path: labelsPath, "label \(labels.data[bad]) at index \(bad): expected 0...9")
        }
        self.split = split
        self.pixels = images.data
        self.labels = labels.data
    }

    static func locate(_ directory: String, _ stem: String) throws(DatasetError) -> String {
        let fm = FileManagerShim.self
        for candidate in ["\(directory)/\(stem).gz", "\(directory)/\(stem)"] where fm.exists(candidate) { return candidate }
        throw DatasetError(path: "\(directory)/\(stem).gz",
                           "file not found (install Debian's dataset-fashion-mnist, or pass the directory holding the IDX files)")
    }

    public func sample(_ index: Int, into: UnsafeMutableBufferPointer<Float>) -> Int {
        let base = index * 784
        pixels.withUnsafeBufferPointer { p in
            for i in 0..<784 { into[i] = Float(p[base + i]) * (1.0 / 255.0) }
        }
        return Int(labels[index])
    }
}

import Foundation

enum FileManagerShim {
    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }
}

extension FashionMNIST {
    /// Writes a small synthetic dataset in Fashion-MNIST's file format (gzipped IDX,
    /// `train-*` and `t10k-*`) into a new temporary directory and returns its path.
    ///
    /// Class c is a bright 6x5 block at a class-specific position on a noisy background,
    /// so a small CNN learns it in a few epochs: for tests, demos and quick checks of a
    /// training setup without the real data. Deterministic for a given `seed`.
    public static func writeSynthetic(train: Int, test: Int, seed: UInt64 = 11) throws(DatasetError) -> String {
        let dir = NSTemporaryDirectory() + "loom-fmnist-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw DatasetError(path: dir, "cannot create directory: \(error)")
        }
        let g = Generator(seed: seed)
        for (prefix, n) in [("train", train), ("t10k", test)] {
            var pixels = [UInt8](repeating: 0, count: n * 784)
            var labels = [UInt8](repeating: 0, count: n)
            for i in 0..<n {
                let c = g.nextInt(below: 10)
                labels[i] = UInt8(c)
                for p in 0..<784 { pixels[i * 784 + p] = UInt8(g.nextInt(below: 60)) }
                let y0 = 2 + (c / 5) * 12, x0 = 2 + (c % 5) * 5
                for y in y0..<(y0 + 6) { for x in x0..<(x0 + 5) { pixels[i * 784 + y * 28 + x] = 250 } }
            }
            try GzipReader.writeAll(IDX.encode(dims: [n, 28, 28], data: pixels), to: "\(dir)/\(prefix)-images-idx3-ubyte.gz")
            try GzipReader.writeAll(IDX.encode(dims: [n], data: labels), to: "\(dir)/\(prefix)-labels-idx1-ubyte.gz")
        }
        return dir
    }
}
