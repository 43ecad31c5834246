# Finds what the CUDA backend needs and, with FD_WITH_CUDA, builds kernels/ as FasterDiffusion::cuda.
include(CheckLanguage)
check_language(CUDA)
find_package(CUDAToolkit QUIET)
set(_fd_cuda_hints)
if(CUDAToolkit_FOUND)
  set(_fd_cuda_hints ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib ${CUDAToolkit_LIBRARY_ROOT}/lib64)
endif()
# cuDNN: inside the toolkit (as on the CI image), a system package, or a Python nvidia-cudnn wheel
# (CUDNN_ROOT=<site-packages>/nvidia/cudnn).
find_path(FD_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS}
          PATH_SUFFIXES include)
find_library(FD_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${_fd_cuda_hints}
             PATH_SUFFIXES lib lib64)

set(_fd_cuda_default OFF)
if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND TARGET CUDA::cublas AND FD_CUDNN_INCLUDE_DIR AND FD_CUDNN_LIBRARY)
  set(_fd_cuda_default ON)
endif()
option(FD_WITH_CUDA "Build the CUDA backend (FasterDiffusion::cuda)" ${_fd_cuda_default})

if(FD_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER OR NOT CUDAToolkit_FOUND OR NOT TARGET CUDA::cublas)
    message(FATAL_ERROR "FD_WITH_CUDA=ON but no CUDA toolkit with nvcc and cuBLAS was found "
                        "(set CUDAToolkit_ROOT, or -DFD_WITH_CUDA=OFF)")
  endif()
  if(NOT FD_CUDNN_INCLUDE_DIR OR NOT FD_CUDNN_LIBRARY)
    message(FATAL_ERROR "FD_WITH_CUDA=ON but cuDNN was not found (cudnn.h: ${FD_CUDNN_INCLUDE_DIR}, "
                        "libcudnn: ${FD_CUDNN_LIBRARY}); set CUDNN_ROOT or -DFD_WITH_CUDA=OFF")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # Ampere and Hopper machine code plus Hopper PTX for newer GPUs.
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90-real 90-virtual)
  endif()
  enable_language(CUDA)
  add_subdirectory(kernels)
  message(STATUS "FasterDiffusion: CUDA backend ON (architectures ${CMAKE_CUDA_ARCHITECTURES}, cuDNN ${FD_CUDNN_LIBRARY})")
else()
  message(STATUS "FasterDiffusion: CUDA backend OFF")
endif()
