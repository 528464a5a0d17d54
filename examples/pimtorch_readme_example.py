# The example of the original's latest torch version (PimTorch) README, unchanged except for
# the import lines and the device string (CPU unless MPIMPY_DEVICE names another one); the
# example's own tb_mode is read from MPIMPY_TB_MODE (default 1, as in the README).
import os
import time

import torch
from matplotlib import pyplot as plt

from mpimpy import SNR, DPETensor, SlicedData

tb_mode = int(os.environ.get("MPIMPY_TB_MODE", "1"))
device = torch.device(os.environ.get("MPIMPY_DEVICE", "cpu"))
if tb_mode == 0:
    torch.manual_seed(42)
    x_data = torch.randn(2, 1000, 1000, dtype=torch.float64, device=device)
    mat_data = torch.randn(1000, 1000, dtype=torch.float64, device=device)
    mblk = torch.tensor([1, 1, 2, 4])
    xblk = torch.tensor([1, 1, 2, 4])
    mat = SlicedData(mblk, device=device, bw_e=8, is_weight=True, quant_gran=(64, 64), paral_size=(64, 64))
    x = SlicedData(xblk, device=device, bw_e=8, quant_gran=(64, 64), paral_size=(64, 64))
    engine = DPETensor(var=0.05, g_level=16, rdac=16, radc=2 ** 8)
    mat.slice_data_imp(engine, mat_data)
    x.slice_data_imp(engine, x_data)
    start = time.time()
    result = engine(x, mat).cpu().numpy()
    rel_result = torch.matmul(x_data, mat_data).cpu().numpy()
    snr_varlue = SNR(result, rel_result)
    print("SNR(dB)", snr_varlue)
    plt.scatter(rel_result.reshape(-1), result.reshape(-1))
    plt.xlabel('Expected Value of Dot Product')
    plt.ylabel('Measured Value of Dot Product')
    plt.show()
elif tb_mode == 1:
    torch.manual_seed(42)
    x_data = torch.randn(1000, 1000, dtype=torch.float64, device=device)
    mat_data = torch.randn(1000, 1000, dtype=torch.float64, device=device)
    mblk = torch.tensor([1, 1, 2, 2])
    xblk = torch.tensor([1, 1, 2, 2])
    size = 64
    paral_size = size
    mat = SlicedData(mblk, device=device, bw_e=None, is_weight=True,
                     paral_size=(paral_size, paral_size), quant_gran=(1,size))
    x = SlicedData(xblk, device=device, bw_e=None, paral_size=(paral_size, paral_size), quant_gran=(1,size))
    engine = DPETensor(var=0.00, g_level=16, rdac=16, radc=2**12)
    mat.slice_data_imp(engine, mat_data)
    x.slice_data_imp(engine, x_data)
    start = time.time()
    result = engine(x, mat).cpu().numpy()
    rel_result = torch.matmul(x_data, mat_data).cpu().numpy()
    snr_varlue = SNR(result, rel_result)
    print("SNR(dB)", snr_varlue)

    plt.scatter(rel_result.reshape(-1), result.reshape(-1))
    plt.xlabel('Expected Value of Dot Product')
    plt.ylabel('Measured Value of Dot Product')
    plt.show()
