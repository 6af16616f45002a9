/// Which gradients are all-reduced together: parameters grouped into buckets, a plan
/// built by a pure function and validated before a reducer uses it.
///
/// Li et al. 2020 ("PyTorch Distributed", sec. 3.2.3 and 4.2.1): gradients become ready
/// roughly in *reverse* registration order during backward, so parameters are bucketed
/// from last to first; a bucket is all-reduced as one fused buffer as soon as all its
/// gradients are ready, overlapping communication with the rest of backward. Fusing
/// many small tensors into one collective is GradientFlow's "lazy allreduce" (Sun et al.
/// 2019, sec. 4.1): per-collective latency is paid once per bucket, not per tensor. The
/// first bucket is small (PyTorch: 1 MiB) so communication starts early; the others
/// are capped at 25 MiB by default.
///
/// Rule (`init(parameterBytes:capBytes:firstBucketCapBytes:)`): walk parameters from the
/// last to the first; a parameter joins the current bucket if the bucket stays within
/// its cap (`firstBucketCapBytes` for bucket 0, `capBytes` after), otherwise it starts a
/// new bucket. A parameter larger than the cap gets a bucket of its own. A bucket is
/// never empty (zero-size parameters join the current bucket). This differs slightly
/// from PyTorch's `compute_bucket_assignment_by_size`, which closes a bucket once it
/// *reaches* the limit, so its buckets may exceed the cap by their last parameter; ours
/// exceed it only when a single parameter does.
///
/// Text form (`description`, parsed back by `init(parsing:)`):
/// ```
/// buckets 2 params 3 cap 1024 first 256
/// bucket 0 bytes 200 params 2
/// bucket 1 bytes 900 params 1 0
/// ```
/// Building is O(parameters); validation is O(parameters).
public struct BucketAssignment: Equatable, Sendable, CustomStringConvertible {
    /// One bucket: parameter indices (registration order numbering) in bucket order, and
    /// each parameter's byte offset inside the bucket's flat buffer.
    public struct Bucket: Equatable, Sendable {
        /// Parameter indices, in the order their slots are laid out in the buffer.
        public var parameters: [Int]
        /// Byte offset of each parameter's slot (parallel to `parameters`).
        public var offsets: [Int]
        /// Total bytes of the bucket's buffer.
        public var byteCount: Int
    }

    /// The buckets, in launch order (bucket 0 holds the last registered parameters).
    public private(set) var buckets: [Bucket]
    /// Byte size of every parameter, in registration order.
    public let parameterBytes: [Int]
    /// The cap of every bucket but the first, in bytes.
    public let capBytes: Int
    /// The cap of bucket 0, in bytes.
    public let firstBucketCapBytes: Int

    /// PyTorch DDP's default bucket cap, 25 MiB.
    public static let defaultCapBytes = 25 * 1024 * 1024
    /// PyTorch DDP's default first-bucket cap, 1 MiB.
    public static let defaultFirstBucketCapBytes = 1024 * 1024

    /// Buckets `parameterBytes` (sizes in bytes, registration order) in reverse order
    /// under the caps; see the type's documentation for the rule.
    ///
    /// Throws when a size is negative or a cap is not positive, naming the value.
    public init(parameterBytes: [Int], capBytes: Int = BucketAssignment.defaultCapBytes,
                firstBucketCapBytes: Int = BucketAssignment.defaultFirstBucketCapBytes) throws(DataParallelError) {
        guard capBytes > 0 else { throw DataParallelError("bucket assignment: capBytes \(capBytes) must be > 0") }
        guard firstBucketCapBytes > 0 else {
            throw DataParallelError("bucket assignment: firstBucketCapBytes \(firstBucketCapBytes) must be > 0")
        }
        for (i, b) in parameterBytes.enumerated() where b < 0 {
            throw DataParallelError("bucket assignment: parameter \(i) has \(b) bytes; expected >= 0")
        }
        self.parameterBytes = parameterBytes
        self.capBytes = capBytes
        self.firstBucketCapBytes = firstBucketCapBytes
        var buckets: [Bucket] = []
        var current = Bucket(parameters: [], offsets: [], byteCount: 0)
        for i in parameterBytes.indices.reversed() {
            let size = parameterBytes[i]
            let cap = buckets.isEmpty ? firstBucketCapBytes : capBytes
            if !current.parameters.isEmpty && current.byteCount + size > cap {
                buckets.append(current)
                current = Bucket(parameters: [], offsets: [], byteCount: 0)
            }
            current.parameters.append(i)
            current.offsets.append(current.byteCount)
            current.byteCount += size
        }
        if !current.parameters.isEmpty { buckets.append(current) }
        self.buckets = buckets
    }

    /// An assignment from explicit buckets (parameter index lists, in slot order); offsets
    /// are laid out densely. Validated: throws unless every parameter appears exactly once.
    public init(parameterBytes: [Int], buckets: [[Int]], capBytes: Int = BucketAssignment.defaultCapBytes,
                firstBucketCapBytes: Int = BucketAssignment.defaultFirstBucketCapBytes) throws(DataParallelError) {
        self.parameterBytes = parameterBytes
        self.capBytes = capBytes
        self.firstBucketCapBytes = firstBucketCapBytes
        self.buckets = []
        for (b, list) in buckets.enumerated() {
            var bucket = Bucket(parameters: [], offsets: [], byteCount: 0)
            for p in list {
                guard p >= 0 && p < parameterBytes.count else {
                    throw DataParallelError("bucket assignment: bucket \(b) names parameter \(p); expected 0..<\(parameterBytes.count)")
                }
                bucket.parameters.append(p)
                bucket.offsets.append(bucket.byteCount)
                bucket.byteCount += parameterBytes[p]
            }
            self.buckets.append(bucket)
        }
        try validate()
    }

    /// Checks the invariants: sizes non-negative, caps positive, no empty bucket, every
    /// parameter in exactly one bucket, slots dense and in order, byte counts consistent.
    /// Throws naming the first violation.
    public func validate() throws(DataParallelError) {
        guard capBytes > 0, firstBucketCapBytes > 0 else {
            throw DataParallelError("bucket assignment: caps must be > 0, got cap \(capBytes), first \(firstBucketCapBytes)")
        }
        for (i, b) in parameterBytes.enumerated() where b < 0 {
            throw DataParallelError("bucket assignment: parameter \(i) has \(b) bytes; expected >= 0")
        }
        var owner = [Int?](repeating: nil, count: parameterBytes.count)
        for (bi, bucket) in buckets.enumerated() {
            guard !bucket.parameters.isEmpty else { throw DataParallelError("bucket assignment: bucket \(bi) is empty") }
            guard bucket.offsets.count == bucket.parameters.count else {
                throw DataParallelError("bucket assignment: bucket \(bi) has \(bucket.offsets.count) offsets for \(bucket.parameters.count) parameters")
            }
            var at = 0
            for (k, p) in bucket.parameters.enumerated() {
                guard p >= 0 && p < parameterBytes.count else {
                    throw DataParallelError("bucket assignment: bucket \(bi) names parameter \(p); expected 0..<\(parameterBytes.count)")
                }
                if let o = owner[p] {
                    throw DataParallelError("bucket assignment: parameter \(p) is in bucket \(o) and bucket \(bi); expected exactly one")
                }
                owner[p] = bi
                guard bucket.offsets[k] == at else {
                    throw DataParallelError("bucket assignment: bucket \(bi) slot \(k) (parameter \(p)) at byte \(bucket.offsets[k]); expected \(at)")
                }
                at += parameterBytes[p]
            }
            guard bucket.byteCount == at else {
                throw DataParallelError("bucket assignment: bucket \(bi) has byteCount \(bucket.byteCount); its parameters sum to \(at)")
            }
        }
        if let missing = owner.firstIndex(where: { $0 == nil }) {
            throw DataParallelError("bucket assignment: parameter \(missing) is in no bucket; expected exactly one")
        }
    }

    /// The bucket holding each parameter and the parameter's slot index in it, indexed
    /// by parameter (registration order).
    public var location: [(bucket: Int, slot: Int)] {
        var out = [(bucket: Int, slot: Int)](repeating: (0, 0), count: parameterBytes.count)
        for (b, bucket) in buckets.enumerated() {
            for (k, p) in bucket.parameters.enumerated() { out[p] = (b, k) }
        }
        return out
    }

    /// The text form: a header line, then one line per bucket.
    public var description: String {
        var lines = ["buckets \(buckets.count) params \(parameterBytes.count) cap \(capBytes) first \(firstBucketCapBytes)"]
        for (b, bucket) in buckets.enumerated() {
            lines.append("bucket \(b) bytes \(bucket.byteCount) params " + bucket.parameters.map(String.init).joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }

    /// Parses the text form back (with the parameter sizes, which it does not carry) and
    /// validates it; throws naming the line and what was expected.
    public init(parsing text: String, parameterBytes: [Int]) throws(DataParallelError) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map { $0.split(separator: " ").map(String.init) }
        guard let head = lines.first, head.count == 8, head[0] == "buckets", head[2] == "params", head[4] == "cap", head[6] == "first",
              let n = Int(head[1]), let p = Int(head[3]), let cap = Int(head[5]), let first = Int(head[7]) else {
            throw DataParallelError("bucket assignment text, line 1: expected 'buckets N params P cap BYTES first BYTES', found '\(lines.first?.joined(separator: " ") ?? "")'")
        }
        guard p == parameterBytes.count else {
            throw DataParallelError("bucket assignment text: \(p) parameters; expected \(parameterBytes.count)")
        }
        guard lines.count == n + 1 else {
            throw DataParallelError("bucket assignment text: \(lines.count - 1) bucket lines; the header says \(n)")
        }
        var lists: [[Int]] = []
        var declared: [Int] = []
        for (i, f) in lines.dropFirst().enumerated() {
            guard f.count >= 5, f[0] == "bucket", Int(f[1]) == i, f[2] == "bytes", let bytes = Int(f[3]), f[4] == "params" else {
                throw DataParallelError("bucket assignment text, line \(i + 2): expected 'bucket \(i) bytes B params I...', found '\(f.joined(separator: " "))'")
            }
            var list: [Int] = []
            for s in f.dropFirst(5) {
                guard let v = Int(s) else {
                    throw DataParallelError("bucket assignment text, line \(i + 2): '\(s)' is not a parameter index")
                }
                list.append(v)
            }
            lists.append(list)
            declared.append(bytes)
        }
        try self.init(parameterBytes: parameterBytes, buckets: lists, capBytes: cap, firstBucketCapBytes: first)
        for (b, bytes) in declared.enumerated() where buckets[b].byteCount != bytes {
            throw DataParallelError("bucket assignment text: bucket \(b) says \(bytes) bytes; its parameters sum to \(buckets[b].byteCount)")
        }
    }
}
