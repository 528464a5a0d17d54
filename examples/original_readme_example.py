# The example of the original mPimPy torch version's README, unchanged except for the import
# lines and the device string (CPU unless MPIMPY_DEVICE names another one).
import os
import time

import torch
from matplotlib import pyplot as plt

from mpimpy import RE, DPETensor, SlicedData

tb_mode = int(os.environ.get("MPIMPY_TB_MODE", "1"))
# test for INT format
if tb_mode == 0:
    torch.manual_seed(42)
    device = torch.device(os.environ.get("MPIMPY_DEVICE", "cpu"))
    x_data = torch.randn(4000, 1000, device=device)
    mat_data = torch.randn(1000, 1200, device=device)
    xblk = torch.tensor([1, 1, 4, 4])
    mblk = torch.tensor([1, 1, 4, 4])
    mat = SlicedData(mblk, device=device)
    x = SlicedData(xblk, device=device)

    engine = DPETensor(var=0.0)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, mat_data)
    start = time.time()
    result = engine(x, mat)
    end = time.time()
    print("Tensor time: ", end - start)
    # result = engine._test(x, mat)
    result = result.cpu().numpy()

    rel_result = torch.matmul(x_data, mat_data).cpu().numpy()

    print(RE(result, rel_result))
    plt.scatter(rel_result.reshape(-1), result.reshape(-1))
    plt.xlabel('Expected Value of Dot Product')
    plt.ylabel('Measured Value of Dot Product')
    plt.show()
# test for FP format
elif tb_mode == 1:
    torch.manual_seed(42)
    device = torch.device(os.environ.get("MPIMPY_DEVICE", "cpu"))
    x_data = torch.randn(4000, 1000, device=device)
    mat_data = torch.randn(1000, 1200, device=device)
    xblk = torch.tensor([1, 1, 4, 4])
    mblk = torch.tensor([1, 1, 4, 4])
    mat = SlicedData(mblk, device=device, bw_e=8)
    x = SlicedData(xblk, device=device, bw_e=8)

    engine = DPETensor(var=0.0)
    x.slice_data_imp(engine, x_data, transpose=True)
    mat.slice_data_imp(engine, mat_data)
    start = time.time()
    result = engine(x, mat)
    end = time.time()
    print("Tensor time: ", end - start)
    # result = engine._test(x, mat)
    result = result.cpu().numpy()

    rel_result = torch.matmul(x_data, mat_data).cpu().numpy()

    print(RE(result, rel_result))
    plt.scatter(rel_result.reshape(-1), result.reshape(-1))
    plt.xlabel('Expected Value of Dot Product')
    plt.ylabel('Measured Value of Dot Product')
    plt.show()
