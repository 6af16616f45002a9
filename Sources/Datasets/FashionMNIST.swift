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
