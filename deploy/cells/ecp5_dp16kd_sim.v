// A behavioural simulation model of the ECP5 block RAM DP16KD, for simulating yosys' ECP5
// netlists (yosys' share/ecp5/cells_sim.v declares DP16KD without behaviour).
//
// Written by hand because no simulation model is distributed with the open tools. What it
// models is what yosys' mapping (techlibs/lattice/brams_map_16kd.v, memory_libmap's DP16KD
// rules) relies on:
// - one array of 1024 rows x 18 bits shared by both ports; INITVAL_00..3F hold 16 rows
//   each, row i of a parameter in bits [20*i +: 18] (a 20-bit slot per row);
// - DATA_WIDTH 18: row AD[13:4], byte write enables AD[0] (bits 8:0) and AD[1] (17:9);
//   DATA_WIDTH 9: word AD[13:3], the row's low (AD[3] = 0) or high 9 bits; DATA_WIDTH 4, 2, 1:
//   word AD[13:2], AD[13:1], AD[13:0], packed in the row's nine-bit halves without their
//   ninth bit (word n of a row at bit (n / per_half) * 9 + (n % per_half) * width);
// - a port acts on the rising edge of its clock (CLKxMUX "INV": the falling edge) when CE is
//   high and CS[2:0] equals CSDECODE; WE writes DI; DO shows the addressed word after the
//   edge; on a write, WRITEMODE NORMAL keeps DO, WRITETHROUGH shows the new data,
//   READBEFOREWRITE the old; REGMODE OUTREG adds an output register (enabled by OCE);
//   RST clears the output (RESETMODE SYNC: at the edge, ASYNC: at once).
// - DATA_WIDTH 36, the pseudo-dual-port mode yosys maps a wide memory to
//   (brams_map_16kd.v's PDP rule): port A only writes, the 36-bit word DIB:DIA at AD[13:5],
//   which is the rows 2k (DIA) and 2k + 1 (DIB), with the byte enables AD[3:0] (9 bits
//   each, low byte first); port B only reads, DOB:DOA from the same two rows.
// A read in the cycle the other port writes the same row sees the old row. Not modelled
// (yosys does not emit them): a 36-bit read on port A or write on port B, GSR, and two
// ports writing one row in one cycle (one of the two writes is lost).
`timescale 1ps / 1ps
module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter GSR = "ENABLED";
  parameter CLKAMUX = "CLKA";
  parameter CLKBMUX = "CLKB";
  parameter INITVAL_00 = 320'h0; parameter INITVAL_01 = 320'h0; parameter INITVAL_02 = 320'h0; parameter INITVAL_03 = 320'h0;
  parameter INITVAL_04 = 320'h0; parameter INITVAL_05 = 320'h0; parameter INITVAL_06 = 320'h0; parameter INITVAL_07 = 320'h0;
  parameter INITVAL_08 = 320'h0; parameter INITVAL_09 = 320'h0; parameter INITVAL_0A = 320'h0; parameter INITVAL_0B = 320'h0;
  parameter INITVAL_0C = 320'h0; parameter INITVAL_0D = 320'h0; parameter INITVAL_0E = 320'h0; parameter INITVAL_0F = 320'h0;
  parameter INITVAL_10 = 320'h0; parameter INITVAL_11 = 320'h0; parameter INITVAL_12 = 320'h0; parameter INITVAL_13 = 320'h0;
  parameter INITVAL_14 = 320'h0; parameter INITVAL_15 = 320'h0; parameter INITVAL_16 = 320'h0; parameter INITVAL_17 = 320'h0;
  parameter INITVAL_18 = 320'h0; parameter INITVAL_19 = 320'h0; parameter INITVAL_1A = 320'h0; parameter INITVAL_1B = 320'h0;
  parameter INITVAL_1C = 320'h0; parameter INITVAL_1D = 320'h0; parameter INITVAL_1E = 320'h0; parameter INITVAL_1F = 320'h0;
  parameter INITVAL_20 = 320'h0; parameter INITVAL_21 = 320'h0; parameter INITVAL_22 = 320'h0; parameter INITVAL_23 = 320'h0;
  parameter INITVAL_24 = 320'h0; parameter INITVAL_25 = 320'h0; parameter INITVAL_26 = 320'h0; parameter INITVAL_27 = 320'h0;
  parameter INITVAL_28 = 320'h0; parameter INITVAL_29 = 320'h0; parameter INITVAL_2A = 320'h0; parameter INITVAL_2B = 320'h0;
  parameter INITVAL_2C = 320'h0; parameter INITVAL_2D = 320'h0; parameter INITVAL_2E = 320'h0; parameter INITVAL_2F = 320'h0;
  parameter INITVAL_30 = 320'h0; parameter INITVAL_31 = 320'h0; parameter INITVAL_32 = 320'h0; parameter INITVAL_33 = 320'h0;
  parameter INITVAL_34 = 320'h0; parameter INITVAL_35 = 320'h0; parameter INITVAL_36 = 320'h0; parameter INITVAL_37 = 320'h0;
  parameter INITVAL_38 = 320'h0; parameter INITVAL_39 = 320'h0; parameter INITVAL_3A = 320'h0; parameter INITVAL_3B = 320'h0;
  parameter INITVAL_3C = 320'h0; parameter INITVAL_3D = 320'h0; parameter INITVAL_3E = 320'h0; parameter INITVAL_3F = 320'h0;

  reg [17:0] mem [0:1023];
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};

  // CSDECODE "0bXYZ": the chip-select value that enables the port (its last three characters)
  wire [2:0] csa_want = {CSDECODE_A[23:16] == "1", CSDECODE_A[15:8] == "1", CSDECODE_A[7:0] == "1"};
  wire [2:0] csb_want = {CSDECODE_B[23:16] == "1", CSDECODE_B[15:8] == "1", CSDECODE_B[7:0] == "1"};
  wire sel_a = {CSA2, CSA1, CSA0} == csa_want;
  wire sel_b = {CSB2, CSB1, CSB0} == csb_want;

  // words per nine-bit half of a row, and how many address bits select the word in the row
  function integer per_half(input integer w);
    per_half = w >= 9 ? 1 : 9 / w - (w == 1 ? 1 : 0);   // 9 -> 1, 4 -> 2, 2 -> 4, 1 -> 8
  endfunction
  function integer lsb(input integer w);               // address bits below the word index
    lsb = w == 18 ? 4 : w == 9 ? 3 : w == 4 ? 2 : w == 2 ? 1 : 0;
  endfunction
  function integer bitpos(input integer w, input integer n);   // first bit of word n of a row
    bitpos = w == 18 ? 0 : (n / per_half(w)) * 9 + (n % per_half(w)) * w;
  endfunction
  function [17:0] wmask(input integer w, input integer n, input [1:0] be);
    integer k;
    begin
      wmask = 0;
      if (w == 18) wmask = {{9{be[1]}}, {9{be[0]}}};
      else for (k = 0; k < w; k = k + 1) wmask[bitpos(w, n) + k] = 1'b1;
    end
  endfunction

  integer i;
  initial begin
    if ((DATA_WIDTH_A != 1 && DATA_WIDTH_A != 2 && DATA_WIDTH_A != 4 && DATA_WIDTH_A != 9 && DATA_WIDTH_A != 18 &&
         DATA_WIDTH_A != 36) ||
        (DATA_WIDTH_B != 1 && DATA_WIDTH_B != 2 && DATA_WIDTH_B != 4 && DATA_WIDTH_B != 9 && DATA_WIDTH_B != 18 &&
         DATA_WIDTH_B != 36)) begin
      $display("DP16KD model: DATA_WIDTH %0d / %0d is not modelled", DATA_WIDTH_A, DATA_WIDTH_B);
      $finish;
    end
    for (i = 0; i < 16; i = i + 1) begin
      mem[16 * 'h00 + i] = INITVAL_00[20 * i +: 18]; mem[16 * 'h01 + i] = INITVAL_01[20 * i +: 18];
      mem[16 * 'h02 + i] = INITVAL_02[20 * i +: 18]; mem[16 * 'h03 + i] = INITVAL_03[20 * i +: 18];
      mem[16 * 'h04 + i] = INITVAL_04[20 * i +: 18]; mem[16 * 'h05 + i] = INITVAL_05[20 * i +: 18];
      mem[16 * 'h06 + i] = INITVAL_06[20 * i +: 18]; mem[16 * 'h07 + i] = INITVAL_07[20 * i +: 18];
      mem[16 * 'h08 + i] = INITVAL_08[20 * i +: 18]; mem[16 * 'h09 + i] = INITVAL_09[20 * i +: 18];
      mem[16 * 'h0A + i] = INITVAL_0A[20 * i +: 18]; mem[16 * 'h0B + i] = INITVAL_0B[20 * i +: 18];
      mem[16 * 'h0C + i] = INITVAL_0C[20 * i +: 18]; mem[16 * 'h0D + i] = INITVAL_0D[20 * i +: 18];
      mem[16 * 'h0E + i] = INITVAL_0E[20 * i +: 18]; mem[16 * 'h0F + i] = INITVAL_0F[20 * i +: 18];
      mem[16 * 'h10 + i] = INITVAL_10[20 * i +: 18]; mem[16 * 'h11 + i] = INITVAL_11[20 * i +: 18];
      mem[16 * 'h12 + i] = INITVAL_12[20 * i +: 18]; mem[16 * 'h13 + i] = INITVAL_13[20 * i +: 18];
      mem[16 * 'h14 + i] = INITVAL_14[20 * i +: 18]; mem[16 * 'h15 + i] = INITVAL_15[20 * i +: 18];
      mem[16 * 'h16 + i] = INITVAL_16[20 * i +: 18]; mem[16 * 'h17 + i] = INITVAL_17[20 * i +: 18];
      mem[16 * 'h18 + i] = INITVAL_18[20 * i +: 18]; mem[16 * 'h19 + i] = INITVAL_19[20 * i +: 18];
      mem[16 * 'h1A + i] = INITVAL_1A[20 * i +: 18]; mem[16 * 'h1B + i] = INITVAL_1B[20 * i +: 18];
      mem[16 * 'h1C + i] = INITVAL_1C[20 * i +: 18]; mem[16 * 'h1D + i] = INITVAL_1D[20 * i +: 18];
      mem[16 * 'h1E + i] = INITVAL_1E[20 * i +: 18]; mem[16 * 'h1F + i] = INITVAL_1F[20 * i +: 18];
      mem[16 * 'h20 + i] = INITVAL_20[20 * i +: 18]; mem[16 * 'h21 + i] = INITVAL_21[20 * i +: 18];
      mem[16 * 'h22 + i] = INITVAL_22[20 * i +: 18]; mem[16 * 'h23 + i] = INITVAL_23[20 * i +: 18];
      mem[16 * 'h24 + i] = INITVAL_24[20 * i +: 18]; mem[16 * 'h25 + i] = INITVAL_25[20 * i +: 18];
      mem[16 * 'h26 + i] = INITVAL_26[20 * i +: 18]; mem[16 * 'h27 + i] = INITVAL_27[20 * i +: 18];
      mem[16 * 'h28 + i] = INITVAL_28[20 * i +: 18]; mem[16 * 'h29 + i] = INITVAL_29[20 * i +: 18];
      mem[16 * 'h2A + i] = INITVAL_2A[20 * i +: 18]; mem[16 * 'h2B + i] = INITVAL_2B[20 * i +: 18];
      mem[16 * 'h2C + i] = INITVAL_2C[20 * i +: 18]; mem[16 * 'h2D + i] = INITVAL_2D[20 * i +: 18];
      mem[16 * 'h2E + i] = INITVAL_2E[20 * i +: 18]; mem[16 * 'h2F + i] = INITVAL_2F[20 * i +: 18];
      mem[16 * 'h30 + i] = INITVAL_30[20 * i +: 18]; mem[16 * 'h31 + i] = INITVAL_31[20 * i +: 18];
      mem[16 * 'h32 + i] = INITVAL_32[20 * i +: 18]; mem[16 * 'h33 + i] = INITVAL_33[20 * i +: 18];
      mem[16 * 'h34 + i] = INITVAL_34[20 * i +: 18]; mem[16 * 'h35 + i] = INITVAL_35[20 * i +: 18];
      mem[16 * 'h36 + i] = INITVAL_36[20 * i +: 18]; mem[16 * 'h37 + i] = INITVAL_37[20 * i +: 18];
      mem[16 * 'h38 + i] = INITVAL_38[20 * i +: 18]; mem[16 * 'h39 + i] = INITVAL_39[20 * i +: 18];
      mem[16 * 'h3A + i] = INITVAL_3A[20 * i +: 18]; mem[16 * 'h3B + i] = INITVAL_3B[20 * i +: 18];
      mem[16 * 'h3C + i] = INITVAL_3C[20 * i +: 18]; mem[16 * 'h3D + i] = INITVAL_3D[20 * i +: 18];
      mem[16 * 'h3E + i] = INITVAL_3E[20 * i +: 18]; mem[16 * 'h3F + i] = INITVAL_3F[20 * i +: 18];
    end
  end

  // a port's word: its place in the row (word_in_row), read out into the low bits, placed back
  function integer word_in_row(input integer w, input [13:0] ad);
    word_in_row = w == 18 ? 0 : (ad[3:0] >> lsb(w));
  endfunction
  function [17:0] read_word(input integer w, input [17:0] row, input integer n);
    integer k;
    begin
      read_word = 0;
      if (w == 18) read_word = row;
      else for (k = 0; k < w; k = k + 1) read_word[k] = row[bitpos(w, n) + k];
    end
  endfunction
  function [17:0] place(input integer w, input [17:0] d, input integer n);   // d's low w bits at word n
    integer k;
    begin
      place = 0;
      if (w == 18) place = d;
      else for (k = 0; k < w; k = k + 1) place[bitpos(w, n) + k] = d[k];
    end
  endfunction

  reg [17:0] lat_a = 0, lat_b = 0, reg_a = 0, reg_b = 0;
  wire clk_a = CLKAMUX == "INV" ? ~CLKA : CLKA;
  wire clk_b = CLKBMUX == "INV" ? ~CLKB : CLKB;

  // the row after a port's write of its word (byte enables in 18-bit mode)
  function [17:0] written_row(input integer w, input [13:0] ad, input [17:0] di, input [17:0] old);
    reg [17:0] m;
    begin
      m = wmask(w, word_in_row(w, ad), ad[1:0]);
      written_row = (old & ~m) | (place(w, di, word_in_row(w, ad)) & m);
    end
  endfunction
  // a port's output latch after the edge
  function [17:0] next_latch(input integer w, input [8*16-1:0] writemode, input [13:0] ad, input en, input we,
                             input rst, input [17:0] old, input [17:0] row, input [17:0] lat);
    next_latch = rst ? 18'd0 : !en ? lat : !we ? read_word(w, old, word_in_row(w, ad)) :
                 writemode == "WRITETHROUGH" ? read_word(w, row, word_in_row(w, ad)) :
                 writemode == "READBEFOREWRITE" ? read_word(w, old, word_in_row(w, ad)) : lat;   // NORMAL: kept
  endfunction

  wire rst_a = RESETMODE == "SYNC" && RSTA, rst_b = RESETMODE == "SYNC" && RSTB;
  // the 36-bit mode's word: rows 2k (low) and 2k + 1 (high), k = AD[13:5]
  wire [9:0] lo36_a = {ada[13:5], 1'b0}, hi36_a = {ada[13:5], 1'b1};
  wire [9:0] lo36_b = {adb[13:5], 1'b0}, hi36_b = {adb[13:5], 1'b1};
  reg [17:0] lat_b_hi = 0, reg_b_hi = 0;
  always @(posedge clk_a) begin : port_a
    reg [17:0] old, row;
    if (DATA_WIDTH_A == 36) begin                       // write only: DIA at row 2k, DIB at 2k + 1
      if (CEA && sel_a && WEA && !rst_a) begin
        mem[lo36_a] <= (mem[lo36_a] & ~{{9{ada[1]}}, {9{ada[0]}}}) | (dia & {{9{ada[1]}}, {9{ada[0]}}});
        mem[hi36_a] <= (mem[hi36_a] & ~{{9{ada[3]}}, {9{ada[2]}}}) | (dib & {{9{ada[3]}}, {9{ada[2]}}});
      end
    end else begin
      old = mem[ada[13:4]];
      row = written_row(DATA_WIDTH_A, ada, dia, old);
      if (CEA && sel_a && WEA && !rst_a) mem[ada[13:4]] <= row;   // after both ports read: a read sees the old row
      lat_a <= next_latch(DATA_WIDTH_A, WRITEMODE_A, ada, CEA && sel_a, WEA, rst_a, old, row, lat_a);
      reg_a <= rst_a ? 18'd0 : OCEA ? lat_a : reg_a;
    end
  end
  always @(posedge clk_b) begin : port_b
    reg [17:0] old, row;
    if (DATA_WIDTH_B == 36) begin                       // read only: DOA from row 2k, DOB from 2k + 1
      if (rst_b) begin lat_b <= 0; lat_b_hi <= 0; end
      else if (CEB && sel_b) begin lat_b <= mem[lo36_b]; lat_b_hi <= mem[hi36_b]; end
      reg_b <= rst_b ? 18'd0 : OCEB ? lat_b : reg_b;
      reg_b_hi <= rst_b ? 18'd0 : OCEB ? lat_b_hi : reg_b_hi;
    end else begin
      old = mem[adb[13:4]];
      row = written_row(DATA_WIDTH_B, adb, dib, old);
      if (CEB && sel_b && WEB && !rst_b) mem[adb[13:4]] <= row;
      lat_b <= next_latch(DATA_WIDTH_B, WRITEMODE_B, adb, CEB && sel_b, WEB, rst_b, old, row, lat_b);
      reg_b <= rst_b ? 18'd0 : OCEB ? lat_b : reg_b;
    end
  end

  always @(posedge RSTA) if (RESETMODE == "ASYNC") begin lat_a <= 0; reg_a <= 0; end
  always @(posedge RSTB) if (RESETMODE == "ASYNC") begin lat_b <= 0; reg_b <= 0; lat_b_hi <= 0; reg_b_hi <= 0; end

  // in the 36-bit mode port B's word comes out on both ports' pins: DOB:DOA
  wire [17:0] b_lo = REGMODE_B == "OUTREG" ? reg_b : lat_b;
  wire [17:0] b_hi = REGMODE_B == "OUTREG" ? reg_b_hi : lat_b_hi;
  wire [17:0] doa = DATA_WIDTH_B == 36 ? b_lo : REGMODE_A == "OUTREG" ? reg_a : lat_a;
  wire [17:0] dob = DATA_WIDTH_B == 36 ? b_hi : b_lo;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule
