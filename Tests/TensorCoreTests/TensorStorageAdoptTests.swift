import XCTest
import Foundation
@testable import TensorCore

/// Bytes allocated by the test, freed when the owner dies (never written after init).
private final class TestOwner: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    /// `count` bytes starting `misalign` bytes past a 64-byte boundary, filled from `fill`.
    init(count: Int, misalign: Int = 0, fill: (Int) -> UInt8 = { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }) {
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: count + misalign, alignment: 64)
        for i in 0..<(count + misalign) { raw[i] = i < misalign ? 0xEE : fill(i - misalign) }
        bytes = UnsafeMutableRawBufferPointer(rebasing: raw[misalign...])
        allocation = raw
    }
    private let allocation: UnsafeMutableRawBufferPointer

    var view: UnsafeRawBufferPointer { UnsafeRawBufferPointer(bytes) }

    deinit { allocation.deallocate() }
}

/// `TensorStorage(adopting:...)` / `Tensor(adopting:...)`: storage over bytes owned by
/// another object, which lives exactly as long as the last tensor over them.
final class TensorStorageAdoptTests: XCTestCase {
    /// The same bytes as a copied tensor, for every dtype (raw bytes compared, so NaN
    /// patterns in float dtypes count too).
    func testAdoptedTensorEqualsCopiedTensorBitForBit() {
        for dtype in DType.allCases {
            let shape = [3, 5, 2]
            let n = 30 * dtype.byteSize
            let owner = TestOwner(count: n, fill: { dtype == .bool ? UInt8($0 & 1) : UInt8(truncatingIfNeeded: $0 &* 97 &+ 3) })
            let adopted = Tensor(adopting: owner.view, shape: shape, dtype: dtype, owner: owner)
            let copied = Tensor(rawBytes: Data(owner.view), shape: shape, dtype: dtype)
            XCTAssertTrue(adopted.storageBlock.isAdopted, "\(dtype)")
            XCTAssertFalse(copied.storageBlock.isAdopted)
            XCTAssertEqual(adopted.storageBlock.pointer, UnsafeMutableRawPointer(owner.bytes.baseAddress!), "no copy (\(dtype))")
            XCTAssertEqual(adopted.shape, shape)
            XCTAssertTrue(adopted.isContiguous)
            adopted.withRawBytes { a in copied.withRawBytes { c in XCTAssertEqual(Array(a), Array(c), "\(dtype)") } }
            // Views and ops read the adopted bytes like owned ones.
            let va = adopted.transposed(0, 2).narrowed(dim: 1, start: 1, length: 3)
            let vc = copied.transposed(0, 2).narrowed(dim: 1, start: 1, length: 3)
            va.withRawBytes { a in vc.withRawBytes { c in XCTAssertEqual(Array(a), Array(c), "view, \(dtype)") } }
            if dtype.isFloatingPoint || dtype == .int32 || dtype == .int64 {
                let sa = (adopted.to(.float64) * 2).sum(dim: 1)
                let sc = (copied.to(.float64) * 2).sum(dim: 1)
                XCTAssertEqual(sa.doubles().map(\.bitPattern), sc.doubles().map(\.bitPattern), "op, \(dtype)")
            }
        }
    }

    func testOwnerLivesExactlyAsLongAsTheLastTensorOrView() {
        weak var weakOwner: TestOwner?
        var tensor: Tensor?
        var view: Tensor?
        var copy: Tensor?
        do {
            let owner = TestOwner(count: 4 * 12)
            weakOwner = owner
            tensor = Tensor(adopting: owner.view, shape: [3, 4], dtype: .float32, owner: owner)
        }
        XCTAssertNotNil(weakOwner, "the tensor keeps its owner")
        view = tensor!.transposed(0, 1).narrowed(dim: 0, start: 1, length: 2)
        copy = tensor
        let expected = tensor!.transposed(0, 1).narrowed(dim: 0, start: 1, length: 2).scalars(as: Float.self)
        tensor = nil
        XCTAssertNotNil(weakOwner, "a copy and a view are left")
        copy = nil
        XCTAssertNotNil(weakOwner, "a view is left")
        XCTAssertEqual(view!.scalars(as: Float.self), expected, "the view still reads the owner's bytes")
        view = nil
        XCTAssertNil(weakOwner, "released with the last view")
        XCTAssertNil(copy)
    }

    func testAdoptedBytesAreChargedToTheirTag() {
        let base = Memory.stats()
        weak var weakOwner: TestOwner?
        do {
            let owner = TestOwner(count: 8 * 10)
            weakOwner = owner
            let t = Tensor(adopting: owner.view, shape: [10], dtype: .float64, owner: owner, tag: .activations)
            let during = Memory.stats()
            XCTAssertEqual(during.current(.activations) - base.current(.activations), 80)
            XCTAssertEqual(during.current - base.current, 80)
            XCTAssertEqual(during.liveAllocations - base.liveAllocations, 1)
            XCTAssertEqual(t.storageBlock.tag, .activations)
            t.storageBlock.retag(.workspace)
            XCTAssertEqual(Memory.stats().current(.workspace) - base.current(.workspace), 80)
            XCTAssertEqual(Memory.stats().current(.activations), base.current(.activations))
            // The default tag is the task's current one.
            let u = Memory.withTag(.parameters) { Tensor(adopting: owner.view, shape: [10], dtype: .float64, owner: owner) }
            XCTAssertEqual(u.storageBlock.tag, .parameters)
            XCTAssertEqual(Memory.stats().current(.parameters) - base.current(.parameters), 80)
            withExtendedLifetime((t, u)) {}
        }
        XCTAssertNil(weakOwner)
        let end = Memory.stats()
        XCTAssertEqual(end.current, base.current)
        XCTAssertEqual(end.current(.workspace), base.current(.workspace))
        XCTAssertEqual(end.current(.parameters), base.current(.parameters))
        XCTAssertEqual(end.liveAllocations, base.liveAllocations)
    }

    /// Adopted bytes are never written: a uniquely referenced tensor over them is copied on
    /// its first mutation (and the owner let go), like a shared one.
    func testMutationCopiesFirstAndLeavesTheOwnersBytesAlone() {
        // (In-place arithmetic writes in place only for float32/float64: other dtypes rebind.)
        weak var weakOwner: TestOwner?
        var t: Tensor
        do {
            let owner = TestOwner(count: 4 * 6, fill: { UInt8($0 % 4 == 3 ? 0x3F : 0) })  // 0.5 as Float
            weakOwner = owner
            let original = Array(owner.view)
            t = Tensor(adopting: owner.view, shape: [2, 3], dtype: .float32, owner: owner)
            XCTAssertEqual(t.scalars(as: Float.self), Array(repeating: 0.5, count: 6))
            XCTAssertTrue(t.storageBlock.isAdopted)
            t.add_(1)  // the only reference to its storage, but adopted: must copy
            XCTAssertEqual(Array(owner.view), original, "the owner's bytes are untouched")
        }
        XCTAssertFalse(t.storageBlock.isAdopted)
        XCTAssertEqual(t.scalars(as: Float.self), Array(repeating: 1.5, count: 6))
        XCTAssertNil(weakOwner, "the only tensor moved to its own storage")

        // Shared: the other tensor and a view keep seeing the owner's unchanged bytes.
        let owner = TestOwner(count: 4 * 6)
        let original = Array(owner.view)
        let a = Tensor(adopting: owner.view, shape: [2, 3], dtype: .int32, owner: owner)
        let view = a.narrowed(dim: 1, start: 1, length: 2)
        let floats = TestOwner(count: 4 * 6, fill: { UInt8($0 % 4 == 3 ? 0x40 : $0) })  // finite values
        let floatBytes = Array(floats.view)
        let b = Tensor(adopting: floats.view, shape: [6], dtype: .float32, owner: floats)
        var b2 = b
        b2.mul_(3)
        var c = a
        c.withMutableStoragePointer(Int32.self) { $0[0] = 7 }
        var d = view
        d.copy_(Tensor.zeros([2, 2], dtype: .int32))
        XCTAssertEqual(Array(owner.view), original, "the owner's bytes are untouched")
        XCTAssertEqual(Array(floats.view), floatBytes, "the owner's bytes are untouched")
        XCTAssertEqual(b2.scalars(as: Float.self).map(\.bitPattern), b.scalars(as: Float.self).map { ($0 * 3).bitPattern })
        XCTAssertEqual(c.scalars(as: Int32.self)[0], 7)
        XCTAssertEqual(Array(c.scalars(as: Int32.self).dropFirst()), Array(a.scalars(as: Int32.self).dropFirst()))
        XCTAssertEqual(d.scalars(as: Int32.self), [0, 0, 0, 0])
        XCTAssertTrue(a.storageBlock.isAdopted && view.storageBlock.isAdopted && b.storageBlock.isAdopted)
        XCTAssertFalse(b2.storageBlock.isAdopted || c.storageBlock.isAdopted || d.storageBlock.isAdopted)
        XCTAssertEqual(view.scalars(as: Int32.self), Tensor(rawBytes: Data(original), shape: [2, 3], dtype: .int32)
            .narrowed(dim: 1, start: 1, length: 2).scalars(as: Int32.self))

        // A uniquely referenced tensor over its own storage is still written in place.
        // (Only the address is kept: holding the storage object would make it shared.)
        var owned = Tensor.zeros([4], dtype: .float32)
        let address = owned.storageBlock.pointer
        owned.add_(1)
        XCTAssertEqual(owned.storageBlock.pointer, address)
        XCTAssertEqual(owned.scalars(as: Float.self), [1, 1, 1, 1])
    }

    /// releaseBytes lets the owner go (the accounting sees a free); rematerialize gives the
    /// block fresh owned, 64-byte-aligned bytes that are written in place again.
    func testReleaseLetsTheOwnerGoAndRematerializeOwnsFreshBytes() {
        let base = Memory.stats()
        weak var weakOwner: TestOwner?
        var t: Tensor
        do {
            let owner = TestOwner(count: 4 * 8, misalign: 4)
            weakOwner = owner
            t = Tensor(adopting: owner.view, shape: [8], dtype: .float32, owner: owner, tag: .parameters)
        }
        XCTAssertNotEqual(Int(bitPattern: t.storageBlock.pointer) % 64, 0, "adopted storage is not 64-byte aligned here")
        // (No reference to the storage object is kept: that would make it shared.)
        let serial = t.storageBlock.serial
        t.storageBlock.releaseBytes(note: "adopted block")
        XCTAssertNil(weakOwner, "released bytes do not keep the owner")
        XCTAssertTrue(t.storageBlock.isReleased)
        XCTAssertFalse(t.storageBlock.isAdopted)
        XCTAssertEqual(Memory.stats().current(.parameters), base.current(.parameters))
        XCTAssertEqual(Memory.stats().liveAllocations, base.liveAllocations)
        t.storageBlock.rematerialize()
        XCTAssertFalse(t.storageBlock.isAdopted)
        XCTAssertGreaterThan(t.storageBlock.serial, serial)
        let address = t.storageBlock.pointer
        XCTAssertEqual(Int(bitPattern: address) % 64, 0)
        XCTAssertEqual(Memory.stats().current(.parameters) - base.current(.parameters), 32)
        address.initializeMemory(as: Float.self, repeating: 2, count: 8)
        t.mul_(5)
        XCTAssertEqual(t.storageBlock.pointer, address, "owned again: written in place")
        XCTAssertEqual(t.scalars(as: Float.self), Array(repeating: 10, count: 8))
    }

    func testAlignmentCheckAndEmptyTensors() {
        let owner = TestOwner(count: 64, misalign: 0)
        let p = UnsafeRawPointer(owner.bytes.baseAddress!)
        for dtype in DType.allCases {
            XCTAssertTrue(Tensor.canAdopt(p, dtype: dtype))
            XCTAssertTrue(Tensor.canAdopt(p + dtype.byteSize, dtype: dtype))
            XCTAssertEqual(Tensor.canAdopt(p + 1, dtype: dtype), dtype.byteSize == 1, "\(dtype)")
        }
        XCTAssertFalse(Tensor.canAdopt(p + 4, dtype: .float64))
        XCTAssertTrue(Tensor.canAdopt(p + 4, dtype: .float32))
        XCTAssertFalse(Tensor.canAdopt(p + 2, dtype: .int32))
        XCTAssertTrue(Tensor.canAdopt(p + 2, dtype: .bfloat16))
        // uint8 adopts at any address.
        let bytes = Tensor(adopting: UnsafeRawBufferPointer(rebasing: owner.view[3..<15]), shape: [12], dtype: .uint8, owner: owner)
        XCTAssertTrue(bytes.storageBlock.isAdopted)
        XCTAssertEqual(bytes.scalars(as: UInt8.self), Array(owner.view[3..<15]))

        // No elements: nothing adopted, the owner is not kept.
        weak var weakOwner: TestOwner?
        var empty: Tensor
        do {
            let o = TestOwner(count: 8)
            weakOwner = o
            empty = Tensor(adopting: UnsafeRawBufferPointer(rebasing: o.view[0..<0]), shape: [0, 3], dtype: .float32, owner: o)
        }
        XCTAssertNil(weakOwner)
        XCTAssertFalse(empty.storageBlock.isAdopted)
        XCTAssertEqual(empty.shape, [0, 3])
        XCTAssertEqual(empty.count, 0)
    }

    /// A misaligned address traps with a message naming the address and the dtype.
    func testMisalignedAdoptionTraps() throws {
        if ProcessInfo.processInfo.environment["LOOM_ADOPT_TRAP_CHILD"] == "1" {
            let owner = TestOwner(count: 16, misalign: 2)
            let t = Tensor(adopting: owner.view, shape: [4], dtype: .float32, owner: owner)
            print("unreachable: \(t)")
            return
        }
        let (status, output) = try runSelf(test: "TensorCoreTests.TensorStorageAdoptTests/testMisalignedAdoptionTraps",
                                           environment: ["LOOM_ADOPT_TRAP_CHILD": "1"])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("is not aligned to 4 bytes for float32"), output)
        XCTAssertFalse(output.contains("unreachable"), output)
    }
}
