# frozen_string_literal: true

require "minitest/autorun"

# README's "Where a behaviour lives" table stays true: every document
# section it links to exists, and every function, constant or timer list
# it names is in the file it names (the next file the cell mentions).
class ReadmeTest < Minitest::Test
  ROOT = File.expand_path("..", __dir__)
  README = File.read(File.join(ROOT, "README.md"))

  def rows
    table = README[/^## Where a behaviour lives\n(.*?)\n## /m, 1]
    refute_nil table, "README has the section"
    table.lines.grep(/^\| /).drop(2).map { |line| line.split("|").map(&:strip).reject(&:empty?) }
  end

  # GitHub's anchor for a heading.
  def anchor(heading)
    heading.strip.downcase.gsub(/[^\p{Word}\- ]/, "").tr(" ", "-")
  end

  def test_the_table_covers_the_behaviours_a_reader_asks_about
    assert_operator rows.size, :>=, 8
    rows.each { |row| assert_equal 4, row.size, row.inspect }
  end

  def test_every_linked_section_exists
    rows.flat_map { |row| row[2].scan(/\]\(([^)]*)\)/).flatten }.each do |link|
      file, fragment = link.split("#", 2)
      path = File.join(ROOT, file.empty? ? "README.md" : file)
      assert File.exist?(path), "#{link}: no #{file}"
      headings = File.read(path).scan(/^#+ (.+)$/).flatten.map { |h| anchor(h) }
      assert_includes headings, fragment, "#{link}: no such section" if fragment
    end
  end

  def test_every_name_is_in_its_file
    rows.each do |row|
      names = []
      row[3].scan(/`([^`]+)`/).flatten.each do |token|
        if token.include?(".") && !token.match?(/\A[A-Z]\w*\./) # a file: it holds the names before it
          path = [token, File.join("lib/kino", token)].map { |p| File.join(ROOT, p) }.find { |p| File.exist?(p) }
          assert path, "#{row[0]}: no file #{token}"
          text = File.read(path)
          names.each { |name| assert text.include?(name), "#{row[0]}: #{name} is not in #{token}" }
          names = []
        else
          names << token.split(/[#.]/).last
        end
      end
      assert_empty names, "#{row[0]}: #{names.inspect} name no file after them"
    end
  end

  # "How the code is laid out": its first column, one path a line
  # ("dir/" for a whole folder, "test/*.rb" a pattern; the names indented
  # by two spaces are files of lib/kino/, lines indented further continue
  # the line above).
  def layout
    block = README[/^## How the code is laid out\n\n```\n(.*?)^```$/m, 1]
    refute_nil block, "README has the layout block"
    block.lines.filter_map do |line|
      case line
      when /\A {3,}/ then nil
      when /\A  (\S+)/ then File.join("lib/kino", Regexp.last_match(1))
      else line[/\A(\S+)/, 1]
      end
    end
  end

  # What the layout need not name: the README itself, the license and
  # git's own file.
  UNLISTED = %w[README.md LICENSE .gitignore].freeze

  def test_the_layout_names_every_file_in_the_repository
    files = begin
      IO.popen(%w[git ls-files -z], chdir: ROOT, err: File::NULL, &:read).split("\0")
    rescue Errno::ENOENT # no git here (tools/newer-ruby's chroot)
      []
    end
    skip "not a git checkout" if files.empty?
    entries = layout
    unnamed = (files - UNLISTED).reject do |file|
      entries.any? do |entry|
        entry == file || (entry.end_with?("/") && file.start_with?(entry)) ||
          (entry.include?("*") && File.fnmatch(entry, file))
      end
    end
    assert_empty unnamed, "README's \"How the code is laid out\" does not name these files"
  end

  def test_every_path_the_layout_names_exists
    layout.reject { |entry| entry.include?("*") }.each do |entry|
      assert File.exist?(File.join(ROOT, entry)), "README's layout names #{entry}, which does not exist"
    end
  end
end
