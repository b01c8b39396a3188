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
end
