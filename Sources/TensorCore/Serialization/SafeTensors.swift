import Foundation

/// Reading and writing the safetensors format (the one PyTorch's `safetensors.torch` and
/// Hugging Face use): an 8-byte little-endian header length, a JSON header mapping each
/// name to `{dtype, shape, data_offsets}` (plus optional `__metadata__` strings), then the
/// raw little-endian tensor bytes.
public enum SafeTensors {
    /// A file that is not valid safetensors, or an IO failure; the message names the file and the problem.
    public struct FormatError: Error, CustomStringConvertible, Equatable, Sendable {
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    static let codes: [DType: String] = [.float32: "F32", .float64: "F64", .float16: "F16", .bfloat16: "BF16",
                                         .int32: "I32", .int64: "I64", .uint8: "U8", .bool: "BOOL"]
    static let dtypes: [String: DType] = Dictionary(uniqueKeysWithValues: codes.map { ($1, $0) })

    /// Serialises named tensors (keys sorted, data 8-byte aligned after the header).
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        var blobs: [Data] = []
        for name in names {
            let t = tensors[name]!.contiguous()
            let bytes = t.count * t.dtype.byteSize
            header[name] = ["dtype": codes[t.dtype]!, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            blobs.append(t.withRawBytes { Data($0) })
            offset += bytes
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data()
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for b in blobs { out.append(b) }
        return out
    }

    /// Parses safetensors bytes; `path` only names the source in errors.
    public static func decode(_ data: Data, path: String = "<memory>") throws(FormatError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        func fail(_ m: String) -> FormatError { FormatError(path: path, message: m) }
        guard data.count >= 8 else { throw fail("truncated: expected an 8-byte header length, found \(data.count) bytes") }
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n <= UInt64(data.count - 8) else { throw fail("header length \(n) exceeds the file size \(data.count)") }
        let headerData = data.subdata(in: 8..<(8 + Int(n)))
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let base = 8 + Int(n)
        let available = data.count - base
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let entry = value as? [String: Any], let code = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offs = entry["data_offsets"] as? [Int], offs.count == 2 else {
                throw fail("tensor '\(name)': expected dtype, shape and data_offsets in the header")
            }
            guard let dtype = dtypes[code] else {
                throw fail("tensor '\(name)': unsupported dtype \(code) (expected one of \(codes.values.sorted()))")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(name)': negative dimension in shape \(shape)") }
            let expected = shape.reduce(1, *) * dtype.byteSize
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] - offs[0] == expected else {
                throw fail("tensor '\(name)': data_offsets \(offs) span \(offs[1] - offs[0]) bytes, expected \(expected) for \(code) \(shape)")
            }
            guard offs[1] <= available else {
                throw fail("tensor '\(name)': data ends at byte \(offs[1]) but the data section has \(available) bytes (truncated file?)")
            }
            tensors[name] = Tensor(rawBytes: data.subdata(in: (base + offs[0])..<(base + offs[1])), shape: shape, dtype: dtype)
        }
        return (tensors, metadata)
    }

    /// Writes atomically: a temporary file in the same directory, fsync, then rename, so a
    /// failed save leaves any previous file intact.
    public static func save(_ tensors: [String: Tensor], to path: String, metadata: [String: String] = [:]) throws(FormatError) {
        try writeAtomically(encode(tensors, metadata: metadata), to: path)
    }

    /// Reads a safetensors file.
    public static func load(_ path: String) throws(FormatError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path: path, message: FileManager.default.fileExists(atPath: path) ? "cannot read" : "file not found")
        }
        return try decode(data, path: path)
    }

    /// temp + fsync + rename (+ fsync of the directory).
    public static func writeAtomically(_ data: Data, to path: String) throws(FormatError) {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir.isEmpty ? "." : dir) + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw FormatError(path: path, message: "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var ok = data.withUnsafeBytes { buf -> Bool in
            var done = 0
            while done < buf.count {
                let w = write(fd, buf.baseAddress! + done, buf.count - done)
                if w <= 0 { return false }
                done += w
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw FormatError(path: path, message: "write failed: \(reason)")
        }
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}

extension Tensor {
    /// A dense tensor whose bytes are copied from `rawBytes` (little-endian, as on this machine).
    public init(rawBytes: Data, shape: [Int], dtype: DType) {
        precondition(rawBytes.count == shape.reduce(1, *) * dtype.byteSize,
                     "Tensor(rawBytes:): \(rawBytes.count) bytes for \(dtype) \(shapeString(shape))")
        self.init(uninitializedShape: shape, dtype: dtype)
        let dst = storage.pointer
        rawBytes.withUnsafeBytes { src in if src.count > 0 { dst.copyMemory(from: src.baseAddress!, byteCount: src.count) } }
    }

    /// Calls `body` with the bytes of a dense copy (or of this tensor when already dense).
    public func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let t = isContiguous ? self : contiguousCopy()
        let start = t.storage.pointer + t.offset * dtype.byteSize
        return try body(UnsafeRawBufferPointer(start: start, count: t.count * dtype.byteSize))
    }
}
