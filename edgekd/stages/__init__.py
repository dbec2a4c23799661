"""Pipeline stages. Each reads its inputs from the run directory and writes its outputs back, so
any stage can be re-run or inspected on its own:

    data -> teacher -> student_scratch -> student_kd -> export -> engines -> bench
"""
