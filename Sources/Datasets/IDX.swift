import CZlib
import Foundation

/// Bad or unreadable dataset input: the message names the file, what was expected and what was found.
public struct DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
    public let path: String
    public let message: String
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path): \(message)" }
}

/// Reads whole files through zlib: gzip-compressed files are inflated, plain files pass through.
public enum GzipReader {
    /// The decompressed bytes of `path`.
    public static func readAll(_ path: String) throws(DatasetError) -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DatasetError(path: path, "file not found")
        }
        guard let file = gzopen(path, "rb") else { throw DatasetError(path: path, "cannot open (\(String(cString: strerror(errno))))") }
        defer { gzclose(file) }
        gzbuffer(file, 1 << 20)
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var code: Int32 = 0
                let msg = gzerror(file, &code).map { String(cString: $0) } ?? "unknown zlib error"
                throw DatasetError(path: path, "corrupt compressed data after \(out.count) bytes: \(msg)")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<Int(n)])
        }
        return out
    }

    /// Writes `bytes` gzip-compressed to `path` (test fixtures, exports).
    public static func writeAll(_ bytes: [UInt8], to path: String) throws(DatasetError) {
        guard let file = gzopen(path, "wb") else { throw DatasetError(path: path, "cannot create") }
        let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        gzclose(file)
        guard written == bytes.count else { throw DatasetError(path: path, "wrote \(written) of \(bytes.count) bytes") }
    }
}

/// An array read from an IDX file (the MNIST format): big-endian header, then raw data.
public struct IDXArray: Sendable, Equatable {
    /// Extent of each dimension, e.g. [60000, 28, 28].
    public let dims: [Int]
    /// Elements in row-major order (unsigned bytes; the only type MNIST-style sets use).
    public let data: [UInt8]
}

/// Reader for IDX files (`magic = 0x0000 | type | ndims`, then ndims big-endian UInt32 extents).
public enum IDX {
    /// Reads an IDX file, gzip-compressed or not. Only the unsigned-byte type (0x08) is supported.
    public static func read(_ path: String) throws(DatasetError) -> IDXArray {
        let bytes = try GzipReader.readAll(path)
        return try parse(bytes, path: path)
    }

    /// Parses IDX bytes; `path` only names the source in errors.
    public static func parse(_ bytes: [UInt8], path: String) throws(DatasetError) -> IDXArray {
        guard bytes.count >= 4 else {
            throw DatasetError(path: path, "truncated header: expected at least 4 bytes, found \(bytes.count)")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(path: path, "bad magic: expected 0x0000xxxx, found 0x\(String(format: "%02x%02x%02x%02x", bytes[0], bytes[1], bytes[2], bytes[3]))")
        }
        guard bytes[2] == 0x08 else {
            throw DatasetError(path: path, "unsupported element type 0x\(String(format: "%02x", bytes[2])): expected 0x08 (unsigned byte)")
        }
        let ndims = Int(bytes[3])
        let headerSize = 4 + 4 * ndims
        guard bytes.count >= headerSize else {
            throw DatasetError(path: path, "truncated header: expected \(headerSize) bytes for \(ndims) dimensions, found \(bytes.count)")
        }
        var dims: [Int] = []
        for d in 0..<ndims {
            let o = 4 + 4 * d
            dims.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
        }
        let expected = dims.reduce(1, *)
        let found = bytes.count - headerSize
        guard found == expected else {
            throw DatasetError(path: path, "\(found < expected ? "truncated" : "oversized") data: dimensions \(dims) need \(expected) bytes, found \(found)")
        }
        return IDXArray(dims: dims, data: Array(bytes[headerSize...]))
    }

    /// Serialises an unsigned-byte array in IDX format (for fixtures and exports).
    public static func encode(dims: [Int], data: [UInt8]) -> [UInt8] {
        precondition(dims.reduce(1, *) == data.count, "IDX.encode: dims \(dims) do not match \(data.count) bytes")
        var out: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { out += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        return out + data
    }
}
