// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Loom",
    products: [
        .library(name: "TensorKernels", targets: ["TensorKernels"]),
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "Optimizers", targets: ["Optimizers"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Collectives", targets: ["Collectives"]),
        .library(name: "ReplayStorage", targets: ["ReplayStorage"]),
        .library(name: "DataParallel", targets: ["DataParallel"]),
        .executable(name: "loom", targets: ["loom"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // L0: OpenBLAS's CBLAS interface (Debian: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // L0: zlib, for the gzip-compressed IDX files (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // L0: pure loops over buffers and strides.
        .target(name: "TensorKernels", dependencies: ["CBLAS"]),
        // L1: Tensor, dtypes, RNG, allocator accounting, ops and autograd.
        .target(name: "TensorCore", dependencies: ["TensorKernels"]),
        // L2: Module, layers, losses, initializers, state dicts.
        .target(name: "Layers", dependencies: ["TensorCore"]),
        // L3: the model zoo.
        .target(name: "Models", dependencies: ["Layers", "TensorCore"]),
        // L3: the train/eval loop, metrics, progress, checkpoints.
        .target(name: "Training", dependencies: ["TensorCore", "TensorKernels", "Layers", "Optimizers", "Datasets", "Models"]),
        // L2: datasets, loaders, augmentation.
        .target(name: "Datasets", dependencies: ["TensorCore", "CZlib"]),
        // L2: optax-style gradient transformations, SGD/Adam(W), LR schedules.
        .target(name: "Optimizers", dependencies: ["TensorCore"]),
        // L0: OpenMPI through a shim header (Debian: libopenmpi-dev); its handles are macros.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "mpi-c", providers: [.apt(["libopenmpi-dev"])]),
        // L1': ProcessGroup, MPI and in-process backends, our allreduce algorithms, compression.
        .target(name: "Collectives", dependencies: ["CMPI", "TensorCore", "TensorKernels"]),
        // L4: DDP reducer (buckets, overlap, fusion), ZeRO-style sharded update, SyncBatchNorm.
        .target(name: "DataParallel", dependencies: ["Collectives", "TensorCore", "Layers", "Optimizers", "Training"]),
        // L3: Reverb-style replay tables: selectors, rate limiters, checkpoints.
        .target(name: "ReplayStorage", dependencies: ["TensorCore"]),
        .executableTarget(
            name: "loom",
            dependencies: [
                "TensorCore", "TensorKernels", "Layers", "Models", "Training", "Datasets", "Optimizers",
                "Collectives", "ReplayStorage", "DataParallel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TensorKernelsTests", dependencies: ["TensorKernels"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "TensorKernels"], exclude: ["Fixtures"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "TensorCore"]),
        .testTarget(name: "OptimizersTests", dependencies: ["Optimizers", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Layers", "Datasets", "TensorCore"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Layers", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "CollectivesTests", dependencies: ["Collectives", "TensorCore"]),
        .testTarget(name: "DataParallelTests", dependencies: ["DataParallel", "Collectives", "Layers", "Optimizers", "TensorCore", "Training", "Datasets"]),
        .testTarget(name: "ReplayStorageTests", dependencies: ["ReplayStorage", "TensorCore"]),
    ],
    swiftLanguageModes: [.v6]
)
