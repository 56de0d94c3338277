"""Import files (CSV and XLSX) of citizens, as a region's register sends them."""

import csv

from openpyxl import Workbook

HEADER = ["id_number", "name", "phone", "region_code", "scheme", "account_balance_fen"]


def write_csv(path, rows, *, bom: bool = False, header=HEADER):
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path, rows, header=HEADER):
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("citizens")
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path
